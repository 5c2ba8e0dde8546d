"""Prototype."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from kubebots.runtime.auth import KeyRing
from kubebots.runtime.api.app import create_app
from kubebots.runtime.api.settings import RuntimeSettings
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, default_bots, put_bots, running_app

_STATIC = create_app(RuntimeSettings(store="sqlite::memory:"), keyring=KeyRing()).openapi()
STATS = {}
OPERATIONS = [f"{m.upper()} {p}" for p, ops in _STATIC["paths"].items() for m in ops]


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    url = f"sqlite:{tmp_path_factory.mktemp('fuzz') / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))
    with running_app(url) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server: ThreadedServer) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_errors(api_schema: Any, fuzz_server: ThreadedServer, label: str) -> None:
    method, path = label.split(" ", 1)
    op = api_schema[path][method]
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(op.as_strategy(mode))
        if "{bot_id}" in path:
            for bot in ("default:echo", "default:gpt"):
                strategies.append(op.as_strategy(mode, path_parameters={"bot_id": bot}))
    started = time.monotonic()
    n = 0

    @settings(max_examples=int(__import__("os").environ.get("FUZZ_N", "40")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=st.one_of(strategies))
    def run(case: schemathesis.Case) -> None:
        nonlocal n
        n += 1
        r = case.call_and_validate(base_url=fuzz_server.url, headers=HEADERS_A, checks=[not_a_server_error]); STATS.setdefault(label, {}).setdefault(r.status_code, 0); STATS[label][r.status_code] += 1

    run()
    print(label, n, round(time.monotonic() - started, 2))


def test_zz_stats() -> None:
    for k, v in STATS.items():
        print(k, v)
