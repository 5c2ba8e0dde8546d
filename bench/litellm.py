"""The LiteLLM proxy as an HTTP peer of :mod:`bench.http`: how to start it and describe it.

LiteLLM lives in a venv of its own (``make bench`` builds ``.venv-litellm`` from
``bench/requirements-litellm.txt``); :data:`LITELLM_ENV` names its ``litellm`` executable and
:func:`litellm_executable` fails loudly when it is unset or wrong: the comparison is never
skipped silently (leave :data:`bench.http.LITELLM` out of ``http_load(targets=...)`` instead).

It runs as ``litellm --config CFG --host 127.0.0.1 --port P --num_workers 1``: one uvicorn
worker in the CLI's own process (no fork), on the same pinned CPU as our servers. The config
has one model whose upstream is LiteLLM's built-in ``mock_response`` (no network, no
database) and telemetry off. The environment (:data:`SETTINGS`) keeps it offline and quiet:

* ``LITELLM_LOCAL_MODEL_COST_MAP=True``: the bundled cost map, no fetch at start-up;
* ``LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true``: it refuses to start without a
  master key otherwise; no key means no auth, like our targets (auth off);
* ``LITELLM_LOG=ERROR``: its own loggers (default DEBUG) and, through the CLI, uvicorn's
  ``log_level`` (so the access log, which the CLI leaves on, is filtered out by level);
* every inherited ``LITELLM_*`` variable and ``DATABASE_URL`` are dropped (no master key, no
  database, no surprise setting).

:mod:`bench.http` also checks that its log does not grow with the requests.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KIND = "litellm"  # the server kind bench.http launches through this module
#: The same proxy as users run it in production (:func:`config_yaml` with ``production``).
PRODUCTION_KIND = "litellm-production"
KINDS = (KIND, PRODUCTION_KIND)
#: The production configuration's master key (what clients present; no database behind it).
MASTER_KEY = "sk-bench-master-7f3c9a1e5b2d4f60"
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: Per-deployment limits, high enough never to deny during a run: what they cost is measured.
RPM_LIMIT = 100_000_000
TPM_LIMIT = 10_000_000_000
#: Why the production configuration has no virtual key: LiteLLM's virtual keys live in its
#: PostgreSQL database through prisma, which downloads its query-engine binaries at start-up.
NO_DATABASE = (
    "LiteLLM's virtual keys need its PostgreSQL database through prisma, whose query engine "
    "is downloaded from binaries.prisma.sh at start-up; this machine cannot reach it (tried "
    "with DATABASE_URL: 'Database migration failed ... getaddrinfo ENOTFOUND "
    "binaries.prisma.sh'), so the closest configuration runs: master key auth, rpm/tpm limits "
    "on the deployment, enforced by the router's usage-based-routing-v2 through Redis"
)
LITELLM_ENV = "KUBEBOTS_BENCH_LITELLM"
READY_PATH = "/health/liveliness"
READY_TIMEOUT_S = 120  # it imports for ~10 s on an idle core, more when the core is shared
SETTINGS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    "LITELLM_LOG": "ERROR",
}
DROPPED_PREFIXES = ("LITELLM_",)
DROPPED = frozenset({"DATABASE_URL", "DIRECT_URL", "REDIS_URL", "REDIS_HOST"})
LOOP = "uvloop"  # the CLI passes loop="uvloop" to uvicorn on every non-Windows platform
DESCRIBE = """\
import importlib.metadata as m, importlib.util as u
http = "httptools" if u.find_spec("httptools") else "h11"
print(m.version("litellm"), m.version("uvicorn"), http)
"""


@dataclass(frozen=True)
class LiteLLMInfo:
    version: str
    uvicorn_version: str
    http: str  # the HTTP parser uvicorn's "auto" picks in its venv

    @property
    def stack(self) -> str:
        return f"uvicorn {self.uvicorn_version}, {self.http} + {LOOP}"


def litellm_executable() -> Path:
    """The ``litellm`` executable named by :data:`LITELLM_ENV`; a clear error if unusable."""
    raw = os.environ.get(LITELLM_ENV, "").strip()
    hint = (
        f"{LITELLM_ENV} must name the `litellm` executable of the LiteLLM venv (`make bench` "
        "sets it to .venv-litellm/bin/litellm, built by `make .venv-litellm/.installed`); "
        "to run the HTTP benchmark without LiteLLM, leave bench.http.LITELLM out of targets"
    )
    if not raw:
        raise RuntimeError(f"{LITELLM_ENV} is not set: {hint}")
    path = Path(raw).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(f"{LITELLM_ENV}={raw}: no executable there: {hint}")
    return path.absolute()


def describe(executable: Path) -> LiteLLMInfo:
    """Versions and server stack, from the ``python`` next to ``executable`` (its venv)."""
    python = executable.parent / "python"
    done = subprocess.run(
        [str(python), "-c", DESCRIBE], capture_output=True, text=True, timeout=60, check=False
    )
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 3:
        raise RuntimeError(f"cannot read the LiteLLM venv at {python}:\n{done.stderr[-2000:]}")
    return LiteLLMInfo(*fields)


def config_yaml(model: str, reply: str, *, production: bool = False) -> str:
    """One model, answered by LiteLLM's built-in mock upstream; JSON scalars are valid YAML.

    ``production``: as users run it (short of a database, :data:`NO_DATABASE`): clients present
    :data:`MASTER_KEY`, and the deployment's ``rpm``/``tpm`` limits (:data:`RPM_LIMIT`,
    :data:`TPM_LIMIT`) are counted in Redis (``usage-based-routing-v2``, pre-call checks on)."""
    params: dict[str, object] = {
        "model": "openai/echo",
        "api_key": "sk-none",
        "mock_response": reply,
    }
    if production:
        params |= {"rpm": RPM_LIMIT, "tpm": TPM_LIMIT}
    text = (
        "model_list:\n"
        f"  - model_name: {json.dumps(model)}\n"
        f"    litellm_params: {json.dumps(params)}\n"
        "litellm_settings: {telemetry: false}\n"
    )
    if production:
        router = {
            "routing_strategy": "usage-based-routing-v2",
            "enable_pre_call_checks": True,
            "redis_host": REDIS_HOST,
            "redis_port": REDIS_PORT,
        }
        text += f"router_settings: {json.dumps(router)}\n"
        text += f"general_settings: {json.dumps({'master_key': MASTER_KEY})}\n"
    return text


def command(executable: Path, config: Path, port: int) -> list[str]:
    return [
        str(executable),
        *("--config", str(config)),
        *("--host", "127.0.0.1"),
        *("--port", str(port)),
        *("--num_workers", "1"),
    ]


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without LiteLLM/database settings, plus :data:`SETTINGS`."""
    env = {k: v for k, v in base.items() if k not in DROPPED and not k.startswith(DROPPED_PREFIXES)}
    env.update(SETTINGS)
    return env
