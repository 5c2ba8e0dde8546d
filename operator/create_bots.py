"""``kubebots create-bots``: create Bots from files, each only if it does not exist yet.

Made for a Job that ships Bots with kubebots itself (deploy/quickstart's example Bot): a Bot
cannot be in the same ``kubectl apply`` as the CRD that defines its kind on a fresh cluster
(kubectl maps every object before it sends any), so the Bots travel in a ConfigMap and this
command creates them once the CRD is there.

* Reads every Bot document of the FILEs and of the ``*.yaml``/``*.yml`` files of the DIRs (a
  mounted ConfigMap: its hidden ``..data`` entries are skipped), and validates each with the
  runtime's schema first: if any is invalid, it says which (file, document, field) and creates
  nothing.
* Waits, for at most ``--wait-crd`` seconds, until the CRD ``bots.kubebots.io`` is Established
  and serves ``v1alpha1`` (it reads that CRD, nothing else of the cluster's CRDs).
* Creates each Bot that does not exist; one that exists is never changed (a user's edits stay),
  and a create answered 409 (someone else was first) is fine. Re-running it changes nothing.

It prints one line per Bot: ``created``, or ``exists, kept as it is``. Registered through the
``kubebots.commands`` entry point group, so the runtime never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubebots.runtime.errors import ConfigurationError
from kubebots.runtime.kube_config import ClusterAccess, ClusterAccessError
from kubebots.runtime.schema import (
    API_GROUP,
    API_VERSION,
    FULL_API_VERSION,
    KIND,
    PLURAL,
    parse_bot_document,
)
from kubebots.runtime.schema.document import find_bot_files

from .kube import describe_api_error, status_kind

#: The CRD that defines ``kind: Bot`` (crds/bots.kubebots.io.yaml).
CRD_NAME = f"{PLURAL}.{API_GROUP}"
#: Seconds one API call may take (a hung API must not hang the command).
REQUEST_TIMEOUT = 10.0
#: Seconds between two reads of the CRD while waiting for it.
POLL_INTERVAL = 2.0
#: HTTP statuses worth another read of the CRD (the API is starting, overloaded or proxied).
RETRYABLE = {429, 500, 502, 503, 504}
#: The metadata a created Bot keeps from its file (an exported object's uid, resourceVersion,
#: creationTimestamp... would make the create fail).
KEPT_METADATA = ("name", "namespace", "labels", "annotations")


class CreateBotsError(Exception):
    """The Bots cannot be created; the message says why and what to fix."""


class BotsClient(Protocol):
    """The three API calls the command makes."""

    def read_crd(self, name: str) -> Mapping[str, Any] | None:
        """The CustomResourceDefinition ``name`` as the API returns it; ``None`` when absent."""
        ...

    def exists(self, namespace: str, name: str) -> bool:
        """Whether the Bot ``namespace/name`` exists."""
        ...

    def create(self, body: Mapping[str, Any]) -> bool:
        """Create the Bot ``body``; ``False`` when one of that name exists already (HTTP 409)."""
        ...


@dataclass(frozen=True, slots=True)
class BotFile:
    """One Bot document, validated: ``body`` is what is sent to the API."""

    namespace: str
    name: str
    source: str
    body: Mapping[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one Bot."""

    namespace: str
    name: str
    created: bool


# -- reading and validating --------------------------------------------------------------------


def bot_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the Bot files directly in the directories named (sorted by name;
    hidden entries such as a mounted ConfigMap's ``..data`` are skipped): ``kubebots
    validate``'s reading of ``-f``, a missing path being this command's error."""
    try:
        return find_bot_files(paths)
    except ConfigurationError as exc:
        raise CreateBotsError(exc.message) from None


def _body(doc: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    meta: Mapping[str, Any] = doc["metadata"]
    metadata = {k: meta[k] for k in KEPT_METADATA if k in meta}
    metadata["namespace"] = namespace
    body: dict[str, Any] = {"apiVersion": FULL_API_VERSION, "kind": KIND, "metadata": metadata}
    if "spec" in doc:
        body["spec"] = doc["spec"]
    return body


def load_bots(paths: Iterable[str | Path]) -> list[BotFile]:
    """Every Bot document in ``paths``, validated with the runtime's schema (as the operator
    validates a Bot's spec). All or nothing: :class:`CreateBotsError` lists every invalid
    document (``FILE#INDEX``) with its fields, and a Bot named twice."""
    paths = list(paths)
    bots: list[BotFile] = []
    problems: list[str] = []
    files = bot_files(paths)
    for path in files:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read ({type(exc).__name__})")
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problems.append(f"{path}: not valid YAML ({type(exc).__name__}{where})")
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            source = f"{path}#{index}"
            try:
                parsed = parse_bot_document(doc, source=source)
            except ConfigurationError as exc:
                fields = "; ".join(f"{field}: {reason}" for field, reason in exc.errors)
                problems.append(f"{source}: invalid: {fields or exc.message}")
                continue
            bots.append(
                BotFile(parsed.namespace, parsed.name, source, _body(doc, parsed.namespace))
            )
    seen: dict[str, str] = {}
    for bot in bots:
        if bot.ref in seen:
            problems.append(f"{bot.source}: Bot {bot.ref} is also in {seen[bot.ref]}")
        seen.setdefault(bot.ref, bot.source)
    if problems:
        raise CreateBotsError("nothing created:\n  " + "\n  ".join(problems))
    if not bots:
        raise CreateBotsError(f"no Bot document found in {', '.join(map(str, paths))}")
    return bots


# -- waiting for the CRD -----------------------------------------------------------------------


def crd_problem(crd: Mapping[str, Any] | None) -> str | None:
    """Why the Bots cannot be created yet with ``crd`` (the CRD as read), or ``None``."""
    if crd is None:
        return "not found (install it: kubectl apply -k deploy/default)"
    versions = (crd.get("spec") or {}).get("versions") or []
    if not any(v.get("name") == API_VERSION and v.get("served") for v in versions):
        return f"version {API_VERSION} is not served"
    conditions = (crd.get("status") or {}).get("conditions") or []
    established = [c for c in conditions if c.get("type") == "Established"]
    if not established or established[0].get("status") != "True":
        message = established[0].get("message") if established else None
        return "not Established yet" + (f" ({message})" if message else "")
    return None


def wait_for_crd(
    client: BotsClient,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda _: None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Return once :data:`CRD_NAME` is Established and serves v1alpha1; read it every
    ``interval`` seconds for at most ``timeout`` seconds (0: once), reporting each new reason
    to ``progress``. API outages (connection errors, 429, 5xx) count as "not yet"; any other
    API error (401, 403...) is raised at once."""
    deadline = clock() + timeout
    reported: str | None = None
    while True:
        try:
            reason = crd_problem(client.read_crd(CRD_NAME))
        except (ApiException, HTTPError, OSError) as exc:
            status = exc.status if isinstance(exc, ApiException) else None
            if status is not None and status not in RETRYABLE:
                if status == 403:
                    raise CreateBotsError(
                        f"cannot read the CustomResourceDefinition {CRD_NAME}: "
                        f"{describe_api_error(exc)} "
                        f"(grant `get` on customresourcedefinitions named {CRD_NAME})"
                    ) from None
                raise
            reason = f"API not answering ({describe_api_error(exc)})"
        if reason is None:
            return
        if reason != reported:
            progress(f"waiting for the CustomResourceDefinition {CRD_NAME}: {reason}")
            reported = reason
        remaining = deadline - clock()
        if remaining <= 0:
            raise CreateBotsError(
                f"the CustomResourceDefinition {CRD_NAME} is not ready after {timeout:g} s: "
                f"{reason}"
            )
        sleep(min(interval, remaining))


# -- creating ----------------------------------------------------------------------------------


def create_bots(
    client: BotsClient,
    bots: Sequence[BotFile],
    *,
    report: Callable[[Outcome], None] = lambda _: None,
) -> list[Outcome]:
    """Create each Bot of ``bots`` that does not exist; never touch one that does. Each outcome
    goes to ``report`` as soon as it is known (before a later Bot may fail)."""
    outcomes: list[Outcome] = []
    for bot in bots:
        try:
            created = not client.exists(bot.namespace, bot.name) and client.create(bot.body)
        except (ApiException, HTTPError, OSError) as exc:
            if isinstance(exc, ApiException) and exc.status == 403:
                raise CreateBotsError(
                    f"Bot {bot.ref}: {describe_api_error(exc)} (grant `get` and `create` on "
                    f"{CRD_NAME} in namespace {bot.namespace})"
                ) from None
            raise CreateBotsError(f"Bot {bot.ref}: {describe_api_error(exc)}") from None
        outcome = Outcome(bot.namespace, bot.name, created)
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def describe(outcome: Outcome) -> str:
    state = "created" if outcome.created else "exists, kept as it is"
    return f"Bot {outcome.namespace}/{outcome.name}: {state}"


# -- the adapter on the official client --------------------------------------------------------


class KubeBots:
    """:class:`BotsClient` on the official client's ``ApiextensionsV1Api`` and
    ``CustomObjectsApi``; every call bounded by :data:`REQUEST_TIMEOUT`."""

    def __init__(self, extensions: Any, custom: Any) -> None:
        self._extensions = extensions
        self._custom = custom

    def read_crd(self, name: str) -> Mapping[str, Any] | None:
        try:
            response = self._extensions.read_custom_resource_definition(
                name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        crd: Mapping[str, Any] = json.loads(response.data)
        return crd

    def exists(self, namespace: str, name: str) -> bool:
        try:
            self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            # The Bot's own 404 names its kind; a resource not served is a bare 404 page.
            if exc.status == 404 and status_kind(exc) == PLURAL:
                return False
            raise
        return True

    def create(self, body: Mapping[str, Any]) -> bool:
        namespace = body["metadata"]["namespace"]
        try:
            self._custom.create_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                dict(body),
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


def _connect(env: Mapping[str, str]) -> BotsClient:
    """In-cluster credentials in a pod, else the kubeconfig (:class:`ClusterAccess`)."""
    from kubernetes import client

    api_client = ClusterAccess(env).api_client()
    return KubeBots(client.ApiextensionsV1Api(api_client), client.CustomObjectsApi(api_client))


# -- the command -------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``kubebots create-bots`` (the ``kubebots.commands`` entry point)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "create-bots",
        help="create the Bots of files or directories that do not exist yet (never updates one)",
        description=(
            "Validate every Bot document in the FILEs and in the *.yaml/*.yml files of the "
            "DIRs (nothing is created if one is invalid), wait until the CRD "
            f"{CRD_NAME} is established, then create each Bot that does not exist. An "
            "existing Bot is kept as it is. Prints one line per Bot."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="FILE|DIR", help="Bot YAML files or directories")
    p.add_argument(
        "--wait-crd",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help=f"wait at most this long for the CRD {CRD_NAME} (default 0: check once)",
    )
    p.set_defaults(handler=run_create_bots)


def run_create_bots(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    connect: Callable[[Mapping[str, str]], BotsClient] = _connect,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command: 0 when every Bot exists afterwards, 1 otherwise (the reason on stderr)."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    try:
        bots = load_bots(args.paths)
        client = connect(env)
        wait_for_crd(
            client,
            args.wait_crd,
            clock=clock,
            sleep=sleep,
            progress=lambda line: print(f"create-bots: {line}", file=stderr, flush=True),
        )
        create_bots(client, bots, report=lambda o: print(describe(o), file=stdout, flush=True))
    except (CreateBotsError, ClusterAccessError) as exc:
        print(f"create-bots: {exc}", file=stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - reported in one line, exit 1: the Job retries
        print(f"create-bots: {describe_api_error(exc)}", file=stderr)
        return 1
    return 0
