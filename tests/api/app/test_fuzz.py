"""Schemathesis against the runtime's own OpenAPI schema, over real HTTP: never a 5xx.

The schema is fetched from the running server (``/openapi.json``) and every operation is fuzzed
with Schemathesis' positive and negative generation, authenticated as tenant-a. Only
``not_a_server_error`` is checked, plus one thing that check cannot see: the server must log no
error while handling a case (a streamed route that fails after its 200 has been sent).

Schemathesis' lazy ``from_fixture`` loader does not work with pytest 9 (it sets
``Function._nodeid``), so each operation is one pytest case that runs its own Hypothesis test
on ``operation.as_strategy(...)``; the operation list is taken from the app at collection time
and checked against the served schema, so a new route cannot go unfuzzed.

Random ids would only ever meet 404s, so a drawn "steer" sometimes swaps in real values: the
bots (path ``bot_id`` and the completion ``model``), an existing conversation of tenant-a (path
``conversation_id`` and ``X-Conversation-Id``), tenant-a's own ``client_id`` and a trailing user
message. Besides ``default:echo`` and ``default:gpt`` (memory storage) there is
``default:lite``, an echo bot whose conversations are in SQLite, so a storage backend is on the
path too. Nothing is excluded. About 50 examples per operation; the module takes ~25 s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from kubebots.runtime.api.app import RuntimeSettings, create_app
from kubebots.runtime.auth import KeyRing
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, default_bots, put_bots, running_app
from .helpers import TIMEOUT

EXAMPLES_PER_OPERATION = 50
BOTS = ("default:echo", "default:gpt", "default:lite")
CONVERSATION = "fuzz-conversation"


def _operations() -> list[str]:
    """``"METHOD /path"`` of every operation in the app's schema (no server needed)."""
    app = create_app(RuntimeSettings(store="sqlite::memory:"), keyring=KeyRing())
    return [
        f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops
    ]


OPERATIONS = _operations()


class ServerLog(logging.Handler):
    """Collects the ERROR records of the runtime and of uvicorn (with their tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._lock = threading.Lock()
        self._records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self._records.append(self.format(record))

    def mark(self) -> int:
        with self._lock:
            return len(self._records)

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return self._records[mark:]


@dataclass
class FuzzTarget:
    server: ThreadedServer
    schema: Any
    log: ServerLog


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[FuzzTarget]:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:{tmp / 'store.db'}"
    lite = {
        "llm": {"provider": "echo"},
        "conversationStorage": {"backend": "sqlite", "path": str(tmp / "conversations.db")},
    }
    put_bots(url, "kubebots_", {**default_bots(fake_llm), "default:lite": lite})
    handler = ServerLog()
    loggers = [logging.getLogger(name) for name in ("kubebots", "uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with running_app(url) as server:
            schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
            yield FuzzTarget(server, schema, handler)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_the_served_schema_has_exactly_the_fuzzed_operations(target: FuzzTarget) -> None:
    served = sorted(op.ok().label for op in target.schema.get_all_operations())
    assert served == sorted(OPERATIONS)


@dataclass(frozen=True)
class Steer:
    """Which generated values to replace by real ones (``None``: keep the generated one)."""

    bot: str | None
    conversation: bool
    own_client: bool
    user_last: bool


STEERS = st.builds(
    Steer,
    bot=st.sampled_from([None, *BOTS]),
    conversation=st.booleans(),
    own_client=st.booleans(),
    user_last=st.booleans(),
)


def _steer(case: schemathesis.Case, steer: Steer, base_url: str) -> None:
    """Swap in real values, creating tenant-a's conversation when a case is about to use it."""
    if steer.bot is not None:
        if "bot_id" in case.path_parameters:
            case.path_parameters["bot_id"] = steer.bot
        if isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = steer.bot
    if steer.own_client:
        if "client_id" in case.query:
            case.query["client_id"] = "tenant-a"
        if isinstance(case.body, dict) and "client_id" in case.body:
            case.body["client_id"] = "tenant-a"
    if (
        steer.user_last
        and isinstance(case.body, dict)
        and isinstance(case.body.get("messages"), list)
    ):
        case.body["messages"].append({"role": "user", "content": "steered"})
    if not steer.conversation:
        return
    if "conversation_id" in case.path_parameters:
        case.path_parameters["conversation_id"] = CONVERSATION
    elif case.path == "/v1/chat/completions":
        case.headers["X-Conversation-Id"] = CONVERSATION
    else:
        return
    bot = case.path_parameters.get("bot_id")
    for bot_id in BOTS if bot not in BOTS else (bot,):
        response = httpx.post(
            f"{base_url}/bots/{bot_id}/chat",
            json={"message": "seed", "conversation_id": CONVERSATION},
            headers=HEADERS_A,
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_server_errors(target: FuzzTarget, operation: str) -> None:
    method, path = operation.split(" ", 1)
    api_operation = target.schema[path][method]
    cases = st.one_of(
        [
            api_operation.as_strategy(mode)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]
    )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, steer=STEERS)
    def fuzz(case: schemathesis.Case, steer: Steer) -> None:
        _steer(case, steer, target.server.url)
        mark = target.log.mark()
        response = None
        try:
            response = case.call(base_url=target.server.url, headers=HEADERS_A, timeout=TIMEOUT)
            case.validate_response(response, checks=[not_a_server_error], headers=HEADERS_A)
            assert not target.log.since(mark), "the server logged an error for this request"
        except Exception as exc:
            exc.add_note(f"request: {case.as_curl_command(HEADERS_A, base_url=target.server.url)}")
            if response is not None:
                exc.add_note(f"response: {response.status_code} {response.text[:2000]}")
            for line in target.log.since(mark):
                exc.add_note(f"server log: {line}")
            raise

    fuzz()


@pytest.mark.parametrize("bot_id", BOTS)
@pytest.mark.parametrize("offset", [2**63 - 1, 2**63, 10**30])
def test_history_offsets_past_int64_are_no_server_error(
    target: FuzzTarget, bot_id: str, offset: int
) -> None:
    """A huge ``offset`` once reached SQLite as an integer it cannot hold (a 500); the schema now
    bounds it. The random run draws such values only rarely, so these cases are pinned."""
    seed = Steer(bot=bot_id, conversation=True, own_client=False, user_last=False)
    path = "/bots/{bot_id}/conversations/{conversation_id}"
    case = target.schema[path]["GET"].Case(
        path_parameters={"bot_id": bot_id, "conversation_id": CONVERSATION},
        query={"offset": offset},
    )
    _steer(case, seed, target.server.url)  # creates the conversation
    response = case.call(base_url=target.server.url, headers=HEADERS_A, timeout=TIMEOUT)
    case.validate_response(response, checks=[not_a_server_error], headers=HEADERS_A)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "ValidationError"
