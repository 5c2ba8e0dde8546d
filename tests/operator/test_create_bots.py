"""`kubebots create-bots`: Bots from files, created once the CRD is there, never overwritten.

The logic runs against an in-memory fake of the three calls it makes (the ``BotsClient``
protocol) with a fake clock; the adapter on the official client runs against fakes of
``ApiextensionsV1Api`` and ``CustomObjectsApi`` that answer like the apiserver (a CRD's JSON,
Status bodies naming what was not found, a bare 404 page for a resource not served, 409). A real
apiserver runs it in tests/e2e/test_deploy.py, real pods in the e2e cluster scenarios.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from kubebots.operator.create_bots import (
    CRD_NAME,
    REQUEST_TIMEOUT,
    BotsClient,
    CreateBotsError,
    KubeBots,
    Outcome,
    bot_files,
    crd_problem,
    create_bots,
    load_bots,
    run_create_bots,
    wait_for_crd,
)
from kubebots.runtime.cli import build_parser

from .support import api_error

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "deploy" / "quickstart" / "bots" / "hello.yaml"

BOT = """\
apiVersion: kubebots.io/v1alpha1
kind: Bot
metadata:
  name: {name}
  namespace: {namespace}
spec:
  llm:
    provider: echo
    model: echo
  systemPrompt: {prompt}
"""


def bot_yaml(name: str, namespace: str = "default", prompt: str = "Hi.") -> str:
    return BOT.format(name=name, namespace=namespace, prompt=prompt)


def crd(*, established: bool = True, served: bool = True, message: str = "") -> dict[str, Any]:
    """The CRD as the API returns it (only what the command reads, plus some noise)."""
    condition: dict[str, Any] = {
        "type": "Established",
        "status": "True" if established else "False",
    }
    if message:
        condition["message"] = message
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "resourceVersion": "7"},
        "spec": {
            "group": "kubebots.io",
            "names": {"kind": "Bot", "plural": "bots"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": served, "storage": True}],
        },
        "status": {
            "conditions": [{"type": "NamesAccepted", "status": "True"}, condition],
            "acceptedNames": {"kind": "Bot", "plural": "bots"},
        },
    }


class Clock:
    """A fake monotonic clock; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


class FakeBots:
    """Bots and the Bot CRD in memory, answering as the apiserver does.

    ``crd_at(t)`` is the CRD (or None) at fake time ``t``; ``errors`` are raised by the next
    calls, in order; ``before_create`` runs inside each create before it takes effect (a
    concurrent writer)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.crd_at: Callable[[float], dict[str, Any] | None] = lambda _: crd()
        self.bots: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.errors: list[Exception] = []
        self.before_create: Callable[[Mapping[str, Any]], None] | None = None
        #: Namespaces where RBAC refuses `create` (403, with the apiserver's message).
        self.no_create_in: set[str] = set()

    def _call(self, verb: str, what: str) -> None:
        self.calls.append((verb, what))
        if self.errors:
            raise self.errors.pop(0)

    def read_crd(self, name: str) -> Mapping[str, Any] | None:
        self._call("read_crd", name)
        assert name == CRD_NAME
        return self.crd_at(self.clock.now)

    def exists(self, namespace: str, name: str) -> bool:
        self._call("get", f"{namespace}/{name}")
        return (namespace, name) in self.bots

    def create(self, body: Mapping[str, Any]) -> bool:
        meta = body["metadata"]
        self._call("create", f"{meta['namespace']}/{meta['name']}")
        if meta["namespace"] in self.no_create_in:
            message = (
                f'bots.kubebots.io is forbidden: cannot create resource "bots" in API group'
                f' "kubebots.io" in the namespace "{meta["namespace"]}"'
            )
            raise api_error(403, "Forbidden", {"kind": "Status", "message": message})
        if self.before_create is not None:
            self.before_create(body)
        key = (meta["namespace"], meta["name"])
        if key in self.bots:
            return False
        self.bots[key] = json.loads(json.dumps(body))
        return True

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run(fake: FakeBots, *argv: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    parser = build_parser(load=["create-bots"])
    args = parser.parse_args(["create-bots", *argv])
    out, err = io.StringIO(), io.StringIO()
    connected: list[Mapping[str, str]] = []

    def connect(e: Mapping[str, str]) -> BotsClient:
        connected.append(e)
        return fake

    code = run_create_bots(
        args,
        env or {},
        connect=connect,
        clock=fake.clock,
        sleep=fake.clock.sleep,
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_the_protocol_is_what_the_fake_and_the_adapter_implement() -> None:
    fake: BotsClient = FakeBots()
    adapter: BotsClient = KubeBots(FakeExtensionsApi(), FakeCustomObjectsApi())
    assert fake and adapter


# -- reading and validating ----------------------------------------------------------------


def test_the_shipped_example_bot_loads() -> None:
    (bot,) = load_bots([HELLO])
    assert (bot.namespace, bot.name, bot.source) == ("default", "hello", f"{HELLO}#0")
    document = yaml.safe_load(HELLO.read_text())
    assert bot.body == {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": document["spec"],
    }


def test_a_mounted_configmap_directory_is_read_like_its_files(tmp_path: Path) -> None:
    # What the kubelet makes of a ConfigMap volume: the keys are symlinks into a hidden,
    # timestamped directory through `..data`.
    stamp = tmp_path / "..2025_01_01_00_00_00.000000001"
    stamp.mkdir()
    write(stamp, "b.yaml", bot_yaml("b"))
    write(stamp, "a.yml", bot_yaml("a") + "---\n" + bot_yaml("c", "team-x"))
    write(stamp, "README.txt", "not a Bot")
    (tmp_path / "..data").symlink_to(stamp.name)
    for name in ("b.yaml", "a.yml", "README.txt"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    (tmp_path / "sub.yaml").mkdir()  # a directory, whatever its name: not read
    assert [p.name for p in bot_files([tmp_path])] == ["a.yml", "b.yaml"]
    bots = load_bots([tmp_path])
    assert [(b.namespace, b.name, b.source) for b in bots] == [
        ("default", "a", f"{tmp_path / 'a.yml'}#0"),
        ("team-x", "c", f"{tmp_path / 'a.yml'}#1"),
        ("default", "b", f"{tmp_path / 'b.yaml'}#0"),
    ]


def test_files_and_directories_mix_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", bot_yaml("one"))
    (tmp_path / "more").mkdir()
    write(tmp_path / "more", "two.yaml", bot_yaml("two"))
    assert [b.name for b in load_bots([one, tmp_path / "more"])] == ["one", "two"]
    with pytest.raises(CreateBotsError, match=r"nowhere\.yaml: no such file or directory"):
        load_bots([one, tmp_path / "nowhere.yaml"])


def test_metadata_is_kept_as_written_except_what_a_create_refuses(tmp_path: Path) -> None:
    exported = yaml.safe_load(bot_yaml("x"))
    del exported["metadata"]["namespace"]  # no namespace: `default`, as the schema says
    exported["metadata"] |= {
        "labels": {"team": "a"},
        "annotations": {"note": "mine"},
        "uid": "0b5c",
        "resourceVersion": "42",
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "generation": 3,
    }
    exported["status"] = {"observedGeneration": 3}
    (bot,) = load_bots([write(tmp_path, "x.yaml", yaml.safe_dump(exported))])
    assert bot.body["metadata"] == {
        "name": "x",
        "namespace": "default",
        "labels": {"team": "a"},
        "annotations": {"note": "mine"},
    }
    assert "status" not in bot.body
    assert bot.body["spec"] == exported["spec"]


def test_every_invalid_document_is_named_with_its_fields(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", bot_yaml("good"))
    bad = bot_yaml("bad").replace("provider: echo", "provider: anthropic")
    bad += "---\n" + bot_yaml("typo").replace("systemPrompt:", "systemPromt:")
    write(tmp_path, "b.yaml", bad)
    write(tmp_path, "c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    write(tmp_path, "d.yaml", "kind: [unclosed\n")
    with pytest.raises(CreateBotsError) as caught:
        load_bots([tmp_path])
    lines = str(caught.value).splitlines()
    assert lines[0] == "nothing created:"
    assert lines[1].startswith(f"  {tmp_path / 'b.yaml'}#0: invalid: spec.llm.provider")
    assert lines[2] == (
        f"  {tmp_path / 'b.yaml'}#1: invalid: spec.systemPromt: unknown field (check its spelling)"
    )
    assert lines[3] == f"  {tmp_path / 'c.yaml'}#0: invalid: apiVersion: apiVersion must be" + (
        " kubebots.io/v1alpha1; kind: kind must be Bot"  # every problem at once
    )
    assert lines[4] == f"  {tmp_path / 'd.yaml'}: not valid YAML (ParserError at line 2)"
    assert len(lines) == 5
    assert "anthropic" not in str(caught.value)  # fields named, never values


def test_a_bot_named_twice_and_no_bot_at_all_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", bot_yaml("same"))
    write(tmp_path, "b.yaml", bot_yaml("same", prompt="Other."))
    with pytest.raises(CreateBotsError) as caught:
        load_bots([tmp_path])
    assert str(caught.value).splitlines()[1] == (
        f"  {tmp_path / 'b.yaml'}#0: Bot default/same is also in {tmp_path / 'a.yaml'}#0"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    write(empty, "blank.yaml", "---\n# nothing\n")
    with pytest.raises(CreateBotsError, match=f"no Bot document found in {empty}$"):
        load_bots([empty])


# -- waiting for the CRD -------------------------------------------------------------------


def test_what_makes_the_crd_ready() -> None:
    assert crd_problem(crd()) is None
    assert crd_problem(None) == "not found (install it: kubectl apply -k deploy/default)"
    assert crd_problem(crd(established=False)) == "not Established yet"
    assert crd_problem(crd(established=False, message="installing")) == (
        "not Established yet (installing)"
    )
    assert crd_problem(crd(served=False)) == "version v1alpha1 is not served"
    fresh = crd()
    fresh["status"] = {}  # just created: no condition yet
    assert crd_problem(fresh) == "not Established yet"


def test_it_waits_for_the_crd_to_appear_and_be_established() -> None:
    clock = Clock()
    start = clock.now
    fake = FakeBots(clock)

    def crd_at(t: float) -> dict[str, Any] | None:
        if t < start + 7:
            return None
        return crd(established=t >= start + 12)

    fake.crd_at = crd_at
    progress: list[str] = []
    wait_for_crd(fake, 300, clock=clock, sleep=clock.sleep, progress=progress.append)
    assert clock.now - start == 12  # read every 2 s: found at 8, Established at 12
    assert set(clock.slept) == {2.0}
    assert progress == [  # each reason once, not at every read
        f"waiting for the CustomResourceDefinition {CRD_NAME}: not found"
        " (install it: kubectl apply -k deploy/default)",
        f"waiting for the CustomResourceDefinition {CRD_NAME}: not Established yet",
    ]
    assert fake.verbs() == ["read_crd"] * 7


def test_the_wait_is_bounded_with_the_reason_in_the_error() -> None:
    clock = Clock()
    start = clock.now
    fake = FakeBots(clock)
    fake.crd_at = lambda _: None
    with pytest.raises(CreateBotsError) as caught:
        wait_for_crd(fake, 5, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        f"the CustomResourceDefinition {CRD_NAME} is not ready after 5 s: not found"
        " (install it: kubectl apply -k deploy/default)"
    )
    assert clock.now - start == 5  # never sleeps past the limit
    assert clock.slept == [2.0, 2.0, 1.0]
    # 0: one look, no sleep.
    clock.slept.clear()
    with pytest.raises(CreateBotsError, match="not ready after 0 s"):
        wait_for_crd(fake, 0, clock=clock, sleep=clock.sleep)
    assert clock.slept == []


def test_api_outages_while_waiting_are_retried_but_a_refusal_is_not() -> None:
    clock = Clock()
    fake = FakeBots(clock)
    fake.errors = [
        api_error(503, "Service Unavailable"),
        MaxRetryError(None, "/apis", "connection refused"),  # type: ignore[arg-type]
        api_error(429, "Too Many Requests"),
    ]
    progress: list[str] = []
    wait_for_crd(fake, 60, clock=clock, sleep=clock.sleep, progress=progress.append)
    assert len(fake.calls) == 4
    assert [line.split(": ", 1)[1] for line in progress] == [
        "API not answering (HTTP 503 Service Unavailable)",
        "API not answering (MaxRetryError: None: Max retries exceeded with url: /apis"
        " (Caused by 'connection refused'))",
        "API not answering (HTTP 429 Too Many Requests)",
    ]

    forbidden = {"kind": "Status", "message": "customresourcedefinitions ... is forbidden"}
    fake.errors = [api_error(403, "Forbidden", forbidden)]
    with pytest.raises(CreateBotsError) as caught:
        wait_for_crd(fake, 60, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        f"cannot read the CustomResourceDefinition {CRD_NAME}: HTTP 403 Forbidden:"
        " customresourcedefinitions ... is forbidden (grant `get` on"
        f" customresourcedefinitions named {CRD_NAME})"
    )
    fake.errors = [api_error(401, "Unauthorized")]
    with pytest.raises(ApiException):
        wait_for_crd(fake, 60, clock=clock, sleep=clock.sleep)


# -- creating ------------------------------------------------------------------------------


def test_missing_bots_are_created_existing_ones_kept_untouched(tmp_path: Path) -> None:
    fake = FakeBots()
    mine = yaml.safe_load(bot_yaml("b", prompt="Edited by the user."))
    fake.bots[("default", "b")] = mine
    write(tmp_path, "bots.yaml", bot_yaml("a") + "---\n" + bot_yaml("b") + "---\n" + bot_yaml("c"))
    reported: list[Outcome] = []
    outcomes = create_bots(fake, load_bots([tmp_path]), report=reported.append)
    assert (
        outcomes
        == reported
        == [
            Outcome("default", "a", created=True),
            Outcome("default", "b", created=False),
            Outcome("default", "c", created=True),
        ]
    )
    assert fake.bots[("default", "b")] is mine  # never written
    assert fake.calls == [
        ("get", "default/a"),
        ("create", "default/a"),
        ("get", "default/b"),
        ("get", "default/c"),
        ("create", "default/c"),
    ]


def test_losing_a_create_race_keeps_the_winners_bot(tmp_path: Path) -> None:
    fake = FakeBots()
    theirs = yaml.safe_load(bot_yaml("a", prompt="Theirs."))

    def someone_else(body: Mapping[str, Any]) -> None:
        fake.bots.setdefault(("default", "a"), theirs)

    fake.before_create = someone_else
    outcomes = create_bots(fake, load_bots([write(tmp_path, "a.yaml", bot_yaml("a"))]))
    assert outcomes == [Outcome("default", "a", created=False)]
    assert fake.bots[("default", "a")] is theirs


def test_an_api_error_stops_with_the_bot_named_after_what_was_done(tmp_path: Path) -> None:
    fake = FakeBots()
    fake.no_create_in = {"team-x"}
    write(tmp_path, "bots.yaml", bot_yaml("a") + "---\n" + bot_yaml("b", "team-x"))
    reported: list[Outcome] = []
    with pytest.raises(CreateBotsError) as caught:
        create_bots(fake, load_bots([tmp_path]), report=reported.append)
    assert reported == [Outcome("default", "a", created=True)]
    assert str(caught.value) == (
        "Bot team-x/b: HTTP 403 Forbidden: bots.kubebots.io is forbidden: cannot create resource"
        ' "bots" in API group "kubebots.io" in the namespace "team-x" (grant `get` and `create`'
        " on bots.kubebots.io in namespace team-x)"
    )
    fake.errors = [api_error(500, "Internal Server Error")]
    with pytest.raises(CreateBotsError, match=r"^Bot default/a: HTTP 500 Internal Server Error$"):
        create_bots(fake, load_bots([tmp_path]))


# -- the command ---------------------------------------------------------------------------


def test_the_command_is_registered_through_the_entry_point_group() -> None:
    parser = build_parser(load=["create-bots"])
    args = parser.parse_args(["create-bots", "--wait-crd", "300", "/etc/kubebots/bots", "x.yaml"])
    assert args.handler is run_create_bots
    assert (args.paths, args.wait_crd) == (["/etc/kubebots/bots", "x.yaml"], 300.0)
    assert parser.parse_args(["create-bots", "a.yaml"]).wait_crd == 0.0
    for bad in (["create-bots"], ["create-bots", "--wait-crd", "-1", "a.yaml"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    help_text = subprocess.run(
        [str(Path(sys.executable).with_name("kubebots")), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "create-bots" in help_text


def test_the_command_creates_once_and_keeps_on_a_rerun(tmp_path: Path) -> None:
    fake = FakeBots()
    start = fake.clock.now
    fake.crd_at = lambda t: crd() if t >= start + 3 else None
    code, out, err = run(fake, "--wait-crd", "300", str(HELLO.parent))
    assert (code, out) == (0, "Bot default/hello: created\n")
    assert err == (
        f"create-bots: waiting for the CustomResourceDefinition {CRD_NAME}: not found"
        " (install it: kubectl apply -k deploy/default)\n"
    )
    stored = fake.bots[("default", "hello")]
    assert stored["spec"] == yaml.safe_load(HELLO.read_text())["spec"]
    # The user edits the Bot; the Job runs again: nothing is written.
    stored["spec"]["systemPrompt"] = "Mine now."
    fake.calls.clear()
    code, out, err = run(fake, "--wait-crd", "300", str(HELLO.parent))
    assert (code, out, err) == (0, "Bot default/hello: exists, kept as it is\n", "")
    assert fake.verbs() == ["read_crd", "get"]
    assert fake.bots[("default", "hello")]["spec"]["systemPrompt"] == "Mine now."


def test_an_invalid_file_creates_nothing_and_never_calls_the_api(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", bot_yaml("a"))
    write(tmp_path, "b.yaml", bot_yaml("b").replace("model: echo", "model: echo\n    maxTokens: 0"))
    fake = FakeBots()
    code, out, err = run(fake, str(tmp_path))
    assert (code, out) == (1, "")
    assert err == (
        "create-bots: nothing created:\n"
        f"  {tmp_path / 'b.yaml'}#0: invalid: spec.llm.maxTokens: Input should be greater than"
        " or equal to 1\n"
    )
    assert fake.calls == [] and fake.bots == {}


def test_the_command_fails_after_the_wait_with_nothing_created() -> None:
    fake = FakeBots()
    fake.crd_at = lambda _: crd(established=False)
    code, out, err = run(fake, "--wait-crd", "10", str(HELLO))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"create-bots: the CustomResourceDefinition {CRD_NAME} is not ready after 10 s:"
        " not Established yet"
    )
    assert fake.bots == {}
    assert set(fake.verbs()) == {"read_crd"}


def test_any_other_api_error_is_one_line_and_exit_1() -> None:
    fake = FakeBots()
    fake.errors = [api_error(401, "Unauthorized")]
    code, out, err = run(fake, str(HELLO))
    assert (code, out, err) == (1, "", "create-bots: HTTP 401 Unauthorized\n")


def test_the_api_is_reached_through_cluster_access(tmp_path: Path) -> None:
    # The real connect: ClusterAccess on the handler's environment (no pod here, so the
    # kubeconfig it names), never the process's own environment.
    parser = build_parser(load=["create-bots"])
    args = parser.parse_args(["create-bots", str(HELLO)])
    err = io.StringIO()
    missing = tmp_path / "no-such-kubeconfig"
    code = run_create_bots(args, {"KUBECONFIG": str(missing)}, out=io.StringIO(), err=err)
    assert code == 1
    assert err.getvalue().startswith(
        f"create-bots: no access to a Kubernetes cluster through the kubeconfig {missing}: "
    )


def test_argparse_namespace_is_all_the_handler_reads(tmp_path: Path) -> None:
    fake = FakeBots()
    code = run_create_bots(
        argparse.Namespace(paths=[str(HELLO)], wait_crd=0.0),
        {},
        connect=lambda _: fake,
        out=io.StringIO(),
    )
    assert code == 0
    assert set(fake.bots) == {("default", "hello")}


# -- the adapter on the official client ----------------------------------------------------


class Response:
    """What a call with ``_preload_content=False`` returns: the raw body."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeExtensionsApi:
    """``ApiextensionsV1Api.read_custom_resource_definition`` as the apiserver answers it."""

    def __init__(self) -> None:
        self.crds: dict[str, dict[str, Any]] = {}
        self.kwargs: list[dict[str, Any]] = []

    def read_custom_resource_definition(self, name: str, **kwargs: Any) -> Any:
        self.kwargs.append(kwargs)
        if name not in self.crds:
            raise api_error(
                404,
                "Not Found",
                {"kind": "Status", "details": {"name": name, "kind": "customresourcedefinitions"}},
            )
        return Response(json.dumps(self.crds[name]).encode())


class FakeCustomObjectsApi:
    """The two ``CustomObjectsApi`` methods KubeBots calls, as the apiserver answers them."""

    def __init__(self) -> None:
        self.served = True
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.kwargs: list[dict[str, Any]] = []

    def _check(self, group: str, version: str, plural: str, kwargs: dict[str, Any]) -> None:
        assert (group, version, plural) == ("kubebots.io", "v1alpha1", "bots")
        self.kwargs.append(kwargs)
        if not self.served:
            raise api_error(404, "Not Found", "404 page not found\n")

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kwargs: Any
    ) -> Any:
        self._check(group, version, plural, kwargs)
        if (namespace, name) not in self.objects:
            raise api_error(
                404,
                "Not Found",
                {
                    "kind": "Status",
                    "reason": "NotFound",
                    "details": {"name": name, "group": "kubebots.io", "kind": "bots"},
                },
            )
        return self.objects[(namespace, name)]

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any, **kwargs: Any
    ) -> Any:
        self._check(group, version, plural, kwargs)
        assert body["metadata"]["namespace"] == namespace
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise api_error(409, "Conflict")
        self.objects[key] = body
        return body


def test_the_adapter_reads_the_crd_as_json_and_maps_404() -> None:
    extensions = FakeExtensionsApi()
    adapter = KubeBots(extensions, FakeCustomObjectsApi())
    assert adapter.read_crd(CRD_NAME) is None
    extensions.crds[CRD_NAME] = crd()
    assert adapter.read_crd(CRD_NAME) == crd()
    assert (
        extensions.kwargs == [{"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}] * 2
    )


def test_the_adapter_maps_a_missing_bot_and_409_but_not_a_resource_not_served() -> None:
    custom = FakeCustomObjectsApi()
    adapter = KubeBots(FakeExtensionsApi(), custom)
    body = yaml.safe_load(bot_yaml("a", "team-x"))
    assert adapter.exists("team-x", "a") is False
    assert adapter.create(body) is True
    assert custom.objects[("team-x", "a")] == body
    assert adapter.exists("team-x", "a") is True
    assert adapter.create(body) is False
    assert all(k == {"_request_timeout": REQUEST_TIMEOUT} for k in custom.kwargs)
    custom.served = False
    with pytest.raises(ApiException) as caught:
        adapter.exists("team-x", "b")
    assert caught.value.status == 404


def test_the_whole_flow_on_the_adapter() -> None:
    extensions, custom = FakeExtensionsApi(), FakeCustomObjectsApi()
    extensions.crds[CRD_NAME] = crd()
    adapter = KubeBots(extensions, custom)
    bots = load_bots([HELLO])
    assert create_bots(adapter, bots) == [Outcome("default", "hello", created=True)]
    assert create_bots(adapter, bots) == [Outcome("default", "hello", created=False)]
    assert custom.objects[("default", "hello")]["metadata"] == {
        "name": "hello",
        "namespace": "default",
    }
