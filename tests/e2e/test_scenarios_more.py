"""More end-to-end scenarios on the real kube-apiserver: operator crash, GitOps prune, figures.

Same session ``stack`` as test_scenarios.py (one operator, one runtime, PostgreSQL store).
Scenario 5 kills the operator with SIGKILL and restarts it; it always leaves an operator running.
The figures (``bench_*``, run by ``make bench``, not by ``make test``) assert nothing: they
print latencies and write them to ``FIGURES_FILE``.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from kubebots.runtime.testing.fake_openai import FakeOpenAIServer
from tests.e2e.conftest import POSTGRES_URL, Stack, is_ready_for_generation, wait_until
from tests.e2e.test_scenarios import bot_yaml, chat_ok, echo_spec, openai_spec

FIGURES_FILE = Path("/tmp/kubebots-e2e-figures.json")
BURST = 50
GITOPS_BOTS = 20
# the sizes the issue asks for (bench only); smaller through the environment while iterating
PROPAGATION_UPDATES = int(os.environ.get("KUBEBOTS_BENCH_UPDATES", "200"))
BULK_BOTS = int(os.environ.get("KUBEBOTS_BENCH_BULK", "1000"))
DELETE_WAIT = 15.0


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()


def patch_prompt(stack: Stack, name: str, prompt: str) -> None:
    body = json.dumps({"spec": {"systemPrompt": prompt}})
    stack.kubectl("-n", stack.ns, "patch", "bot", name, "--type", "merge", "-p", body, check=True)


def list_bots(stack: Stack, selector: str) -> list[dict[str, Any]]:
    out = stack.kubectl("-n", stack.ns, "get", "bots", "-l", selector, "-o", "json", check=True)
    return list(json.loads(out.stdout)["items"])


def store_row(stack: Stack, bot_id: str) -> tuple[Any, ...] | None:
    rows = stack.sql(
        "SELECT generation, revision, deleted, config FROM {p}state WHERE bot_id = %s", bot_id
    )
    return rows[0] if rows else None


def runtime_bot(stack: Stack, bot_id: str) -> dict[str, Any]:
    assert stack.runtime is not None
    resp = httpx.get(f"{stack.runtime.url}/bots/{bot_id}", timeout=10)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text}"
    return dict(resp.json())


def ensure_operator(stack: Stack) -> None:
    if stack.operator is None or not stack.operator.alive:
        stack.start_operator()


def test_5_operator_killed_mid_burst_converges_to_the_last_generation(
    stack: Stack, fake_openai: FakeOpenAIServer
) -> None:
    name, bot_id = "burst", f"{stack.ns}:burst"
    stack.apply(bot_yaml(stack.ns, name, openai_spec(fake_openai.base_url, "v0")))
    first = stack.wait_ready(name)
    assert chat_ok(stack, bot_id, "hi") == "[fake-model] v0 | hi"  # loaded on the runtime
    gen0 = first["metadata"]["generation"]
    operator = stack.operator
    assert operator is not None and operator.popen is not None
    try:
        for i in range(1, BURST + 1):
            patch_prompt(stack, name, f"v{i}")
            if i == BURST // 3:  # the operator is busy with the burst: kill -9 it
                operator.popen.kill()
                assert operator.popen.wait(timeout=10) == -9
        stack.start_operator()
    finally:
        ensure_operator(stack)

    last_gen = gen0 + BURST
    assert stack.bot(name)["metadata"]["generation"] == last_gen
    bot = stack.wait_status(
        name,
        lambda b: b["metadata"]["generation"] == last_gen and is_ready_for_generation(b),
        f"Ready=True for generation {last_gen} after the operator restart",
        timeout=90,
    )
    assert bot["status"]["observedGeneration"] == last_gen

    row = store_row(stack, bot_id)
    assert row is not None
    generation, revision, deleted, config = row
    assert (generation, deleted) == (last_gen, False), row
    assert config["systemPrompt"] == f"v{BURST}", config
    assert bot["status"]["revision"] == revision

    def serving() -> dict[str, Any] | None:
        got = runtime_bot(stack, bot_id)
        return got if got["served_revision"] == revision else None

    served = wait_until(
        serving,
        "the runtime to serve the last revision",
        30,
        on_fail=stack.logs,
    )
    assert served["generation"] == last_gen
    assert chat_ok(stack, bot_id, "after") == f"[fake-model] v{BURST} | after"
    system = fake_openai.requests[-1]["body"]["messages"][0]
    assert system == {"role": "system", "content": f"v{BURST}"}


def _write_kustomization(root: Path, ns: str, files: list[str]) -> None:
    lines = [f"namespace: {ns}", "commonLabels:", "  e2e-set: gitops", "resources:"]
    lines += [f"- {f}" for f in files]
    (root / "kustomization.yaml").write_text("\n".join(lines) + "\n")


def test_7_gitops_apply_k_and_prune(stack: Stack, tmp_path: Path) -> None:
    selector = "e2e-set=gitops"
    names = [f"git-{i:02d}" for i in range(GITOPS_BOTS)]
    for name in names:
        head = f"apiVersion: kubebots.io/v1alpha1\nkind: Bot\nmetadata:\n  name: {name}\nspec:\n"
        spec = f"  llm: {{provider: echo, model: echo-1}}\n  systemPrompt: I am {name}.\n"
        (tmp_path / f"{name}.yaml").write_text(head + spec)
    _write_kustomization(tmp_path, stack.ns, [f"{n}.yaml" for n in names])

    stack.kubectl("apply", "-k", str(tmp_path), check=True)
    waited = stack.cp.kubectl(
        "-n",
        stack.ns,
        "wait",
        "--for=condition=Ready",
        "bot",
        "-l",
        selector,
        "--timeout=120s",
        timeout=150,
    )
    assert waited.returncode == 0, f"{waited.stdout}{waited.stderr}\n{stack.logs()}"

    def all_ready(expected: set[str]) -> list[dict[str, Any]] | None:
        bots = list_bots(stack, selector)
        ok = {b["metadata"]["name"] for b in bots} == expected
        return bots if ok and all(is_ready_for_generation(b) for b in bots) else None

    bots = wait_until(lambda: all_ready(set(names)), "20 Bots Ready", 60, on_fail=stack.logs)
    assert all(b["metadata"]["namespace"] == stack.ns for b in bots)

    victim, kept = names[7], names[:7] + names[8:]
    victim_id = f"{stack.ns}:{victim}"
    assert chat_ok(stack, victim_id, "hi") == "echo: hi"
    assert chat_ok(stack, f"{stack.ns}:{kept[0]}", "hi") == "echo: hi"

    (tmp_path / f"{victim}.yaml").unlink()
    _write_kustomization(tmp_path, stack.ns, [f"{n}.yaml" for n in kept])
    # kubectl 1.20's default prune list holds only built-in kinds: a custom resource is pruned
    # only when named in --prune-whitelist (group/version/kind).
    stack.kubectl("apply", "-k", str(tmp_path), "--prune", "-l", selector, check=True)
    time.sleep(1)
    assert stack.bot(victim)["metadata"].get("deletionTimestamp") is None
    stack.kubectl(
        "apply",
        "-k",
        str(tmp_path),
        "--prune",
        "-l",
        selector,
        "--prune-whitelist=kubebots.io/v1alpha1/Bot",
        check=True,
    )

    # 90 s: the finalizer can be held 60 s by kopf's timer cancellation polling (see test_9).
    def gone() -> bool:
        got = stack.kubectl("-n", stack.ns, "get", "bot", victim, check=False)
        return got.returncode != 0 and "NotFound" in got.stderr

    wait_until(gone, f"bot/{victim} deleted (finalizer done)", 90, on_fail=stack.logs)
    row = store_row(stack, victim_id)
    assert row is not None and row[2] is True, row  # the tombstone

    assert stack.runtime is not None
    runtime = stack.runtime
    wait_until(
        lambda: runtime.chat(victim_id, "anyone?").status_code == 404,
        "chat with the pruned bot to 404",
        30,
        on_fail=stack.logs,
    )
    bots = wait_until(lambda: all_ready(set(kept)), "19 Bots still Ready", 60, on_fail=stack.logs)
    assert len(bots) == GITOPS_BOTS - 1
    live = stack.sql(
        "SELECT bot_id FROM {p}state WHERE NOT deleted AND bot_id LIKE %s",
        f"{stack.ns}:git-%",
    )
    assert sorted(r[0] for r in live) == sorted(f"{stack.ns}:{n}" for n in kept)
    assert chat_ok(stack, f"{stack.ns}:{kept[0]}", "still") == "echo: still"

    # Not waiting for the finalizers (see test_9: one can be held for 60 s): the tombstones.
    stack.kubectl("-n", stack.ns, "delete", "bots", "-l", selector, "--wait=false")

    def kept_tombstoned() -> bool:
        ids = [f"{stack.ns}:{n}" for n in kept]
        rows = stack.sql("SELECT count(*) FROM {p}state WHERE deleted AND bot_id = ANY(%s)", ids)
        return bool(rows[0][0] == len(kept))

    wait_until(kept_tombstoned, "the 19 Bots tombstoned", 60, on_fail=stack.logs)


def _py_spy(stack: Stack, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator into /tmp/kubebots-e2e-NAME.collapsed, when the bench
    passes its path in KUBEBOTS_BENCH_PY_SPY (stop it with SIGINT)."""
    exe = os.environ.get("KUBEBOTS_BENCH_PY_SPY")
    if not exe or stack.operator is None or stack.operator.popen is None:
        return None
    out = Path(f"/tmp/kubebots-e2e-{name}.collapsed")
    out.unlink(missing_ok=True)
    argv = [exe, "record", "--nonblocking", "-r", "100", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [*argv, "-p", str(stack.operator.popen.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        # nearest rank
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return round(ordered[rank - 1], 1)

    return {
        "n": len(ordered),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


def bench_figures_propagation_and_bulk_ready(stack: Stack) -> None:
    """Not asserted: apply -> serving latency, and M Bots at once -> all Ready."""
    assert stack.runtime is not None
    figures: dict[str, Any] = {"kubernetes": "1.20.2 (kube-apiserver + etcd, local)"}

    # 1. apply -> serving, N sequential updates of one Bot (bot loaded on the runtime), twice:
    # through `kubectl patch` (what a user runs; it includes a kubectl process start) and through
    # one PATCH request to the apiserver (what Argo CD / Flux do; our own path, nothing else).
    name, bot_id = "speed", f"{stack.ns}:speed"
    stack.apply(bot_yaml(stack.ns, name, echo_spec("s0")))
    gen = stack.wait_ready(name)["metadata"]["generation"]
    assert chat_ok(stack, bot_id, "warm") == "echo: warm"
    url = f"{stack.runtime.url}/bots/{bot_id}"
    bot_path = f"/apis/kubebots.io/v1alpha1/namespaces/{stack.ns}/bots/{name}"
    samples: dict[str, list[float]] = {
        "kubectl": [],
        "api": [],
        "kubectl_patch_only": [],
        "api_to_store": [],  # the API series, until the operator's store write is visible
    }
    store = psycopg.connect(POSTGRES_URL, autocommit=True)
    in_store = f"SELECT generation FROM {stack.prefix}state WHERE bot_id = %s".encode()
    api = httpx.Client(
        base_url=stack.cp.server,
        verify=str(stack.cp.ca_file),
        headers={"Authorization": f"Bearer {stack.cp.token}"},
        timeout=10,
    )
    with httpx.Client(timeout=10) as client, api:
        for via in ("kubectl", "api"):
            for i in range(1, PROPAGATION_UPDATES + 1):
                gen += 1
                prompt = f"{via}{i}"
                start = time.perf_counter()
                if via == "kubectl":
                    patch_prompt(stack, name, prompt)
                    samples["kubectl_patch_only"].append((time.perf_counter() - start) * 1000)
                else:
                    api.patch(
                        bot_path,
                        content=json.dumps({"spec": {"systemPrompt": prompt}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    ).raise_for_status()
                    while store.execute(in_store, (bot_id,)).fetchone() != (gen,):
                        assert time.perf_counter() < start + 60, f"update {i} never stored"
                        time.sleep(0.001)
                    samples["api_to_store"].append((time.perf_counter() - start) * 1000)
                deadline = start + 60
                while True:
                    body = client.get(url).json()
                    if body["generation"] == gen and body["served_revision"] == body["revision"]:
                        break
                    assert time.perf_counter() < deadline, f"update {i} never served: {body}"
                    time.sleep(0.002)
                samples[via].append((time.perf_counter() - start) * 1000)
                # Not timed: let the operator finish this update (status written) so the next
                # one measures an apply to an idle system, not the tail of the previous one.
                while api.get(bot_path).json().get("status", {}).get("observedGeneration") != gen:
                    assert time.perf_counter() < deadline, f"update {i}: status never caught up"
                    time.sleep(0.005)
    figures["apply_to_serving_ms"] = _percentiles(samples["kubectl"])
    figures["apply_to_serving_ms"]["measured"] = (
        "just before `kubectl patch --type merge` (a process start, ~the patch_only time) "
        "until the runtime's GET /bots/{id} shows the new generation served; polled every 2 ms; "
        "each update starts once the operator has written the previous one's status"
    )
    figures["api_patch_to_serving_ms"] = _percentiles(samples["api"])
    figures["api_patch_to_serving_ms"]["measured"] = (
        "just before one merge-PATCH request to the apiserver (keep-alive client, as a GitOps "
        "controller sends it) until GET /bots/{id} shows the new generation served"
    )
    store.close()
    figures["kubectl_patch_only_ms"] = _percentiles(samples["kubectl_patch_only"])
    figures["api_patch_to_store_ms"] = _percentiles(samples["api_to_store"])
    figures["samples_ms"] = {k: [round(v, 2) for v in vs] for k, vs in samples.items()}
    stack.kubectl("-n", stack.ns, "delete", "bot", name, "--wait=false")

    # 2. M Bots created at once -> all Ready. Created through the API by 8 threads, as a GitOps
    # controller applies a synced app (a `kubectl apply` of 1,000 documents takes ~50 s on this
    # machine by itself: it is client-side throttled and sequential).
    selector = "e2e-set=bulk"
    bots_path = f"/apis/kubebots.io/v1alpha1/namespaces/{stack.ns}/bots"
    docs = []
    for i in range(BULK_BOTS):
        doc = yaml.safe_load(bot_yaml(stack.ns, f"bulk-{i:04d}", echo_spec(f"bulk {i}")))
        doc["metadata"]["labels"] = {"e2e-set": "bulk"}
        docs.append(doc)
    bulk = httpx.Client(
        base_url=stack.cp.server,
        verify=str(stack.cp.ca_file),
        headers={"Authorization": f"Bearer {stack.cp.token}"},
        timeout=30,
        limits=httpx.Limits(max_connections=8),
    )
    spy = _py_spy(stack, "operator-bulk")
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for reply in pool.map(lambda d: bulk.post(bots_path, json=d), docs):
            reply.raise_for_status()
    applied = time.perf_counter() - start

    timeline: list[tuple[float, int]] = []  # (seconds since the first create, Bots Ready)

    def all_ready() -> bool:
        reply = bulk.get(bots_path, params={"labelSelector": selector})
        bots = reply.raise_for_status().json()["items"]
        ready = sum(1 for b in bots if is_ready_for_generation(b))
        timeline.append((round(time.perf_counter() - start, 2), ready))
        return len(bots) == BULK_BOTS and ready == BULK_BOTS

    wait_until(all_ready, f"{BULK_BOTS} Bots Ready", 600, 0.5, stack.logs)
    ready_s = time.perf_counter() - start
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
        spy.wait(timeout=60)
    figures["bulk_create_to_all_ready_s"] = {
        "bots": BULK_BOTS,
        "create_burst_s": round(applied, 2),
        "all_ready_s": round(ready_s, 2),
        "note": f"{BULK_BOTS} Bots POSTed by 8 threads; goal <= 30 s",
        "ready_timeline": timeline,
    }
    # 3. Deleting them: every store entry tombstoned, then every Bot gone (finalizer removed).
    # Capped at DELETE_WAIT: what is left then is reported, not waited for.
    ids = [f"{stack.ns}:bulk-{i:04d}" for i in range(BULK_BOTS)]
    start = time.perf_counter()
    # one DELETE per Bot from 8 threads (a deletecollection of 1,000 Bots outlives the
    # apiserver's own 60 s request timeout on this machine: 504, half done)
    with ThreadPoolExecutor(8) as pool:
        names = [d["metadata"]["name"] for d in docs]
        for reply in pool.map(lambda n: bulk.delete(f"{bots_path}/{n}"), names):
            reply.raise_for_status()

    def all_tombstoned() -> bool:
        rows = stack.sql("SELECT count(*) FROM {p}state WHERE deleted AND bot_id = ANY(%s)", ids)
        return bool(rows[0][0] == BULK_BOTS)

    wait_until(all_tombstoned, f"{BULK_BOTS} tombstones", 300, 0.2, stack.logs)
    tombstoned = time.perf_counter() - start
    left: list[dict[str, Any]] = []
    while time.perf_counter() - start < DELETE_WAIT:
        reply = bulk.get(bots_path, params={"labelSelector": selector})
        left = reply.raise_for_status().json()["items"]
        if not left:
            break
        time.sleep(0.25)
    figures["bulk_delete"] = {
        "bots": BULK_BOTS,
        "all_tombstoned_s": round(tombstoned, 2),
        "all_gone_s": None if left else round(time.perf_counter() - start, 2),
        f"still_present_after_{DELETE_WAIT:.0f}s": len(left),
        "still_present_names": sorted(b["metadata"]["name"] for b in left),
    }

    bulk.close()
    FIGURES_FILE.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nfigures ({FIGURES_FILE}):\n{json.dumps(figures, indent=2)}")
