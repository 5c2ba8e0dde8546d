"""The web console at ``/ui`` in a real browser (Debian's Chromium driven by Playwright) against
the runtime on real uvicorn: API keys, the Bot picker and status, streamed chat, switching Bots,
the history after a reload, tool calls waiting for approval, and the page's security headers.

The first test writes the README's screenshot (``docs/console.png``); its content is
deterministic (fixed Bots, messages and window), so the file changes only when the UI does.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from kubebots.runtime.api.app.routers.ui import CONTENT_SECURITY_POLICY
from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id
from kubebots.runtime.testing import FakeOpenAIServer
from kubebots.runtime.testing.tool_servers import HttpToolServer

from ..api.app.conftest import put_bots, running_app
from .browser import chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "console.png"
KEY = "key-a-0123456789"  # tenant-a's, in the app's KEYS
ECHO, GPT, TOOLS = "default:echo", "default:gpt", "default:tools"
WAIT = 20_000  # ms: a loaded machine (the whole suite runs beside this) is slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(chunk_delay=0.01) as server:  # one word per chunk, a little apart
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[HttpToolServer]:
    with HttpToolServer() as server:
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage); uncaught errors and CSP violations fail the test."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 720},
        device_scale_factor=1,
        color_scheme="light",
        locale="en-US",
        timezone_id="UTC",
    )
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield tab
    context.close()
    assert problems == []


def bots(fake: FakeOpenAIServer, web: HttpToolServer) -> dict[str, dict[str, Any]]:
    weather = {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "url": web.url + "/weather/{city}",
        "requiresApproval": True,
    }
    return {
        ECHO: {"llm": {"provider": "echo"}, "systemPrompt": "echo bot"},
        GPT: {
            "llm": {"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url},
            "systemPrompt": "be brief",
        },
        TOOLS: {"llm": {"provider": "echo"}, "tools": {"http": [weather]}},
    }


def store(tmp_path: Path, fake: FakeOpenAIServer, web: HttpToolServer) -> str:
    """A store with the Bots, written on another thread (Playwright's loop runs on this one)."""
    url = f"sqlite:{tmp_path / 'store.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(put_bots, url, "kubebots_", bots(fake, web)).result()
    return url


def send(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def bodies(page: Page) -> Any:
    return page.locator("#messages .msg .body")


def test_console_with_api_keys_streams_switches_bots_and_keeps_history(
    tmp_path: Path, fake: FakeOpenAIServer, web: HttpToolServer, page: Page
) -> None:
    with running_app(store(tmp_path, fake, web), ui=True) as server:
        response = page.goto(f"{server.url}/ui")
        assert response is not None and response.status == 200
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        for directive in ("default-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
            assert directive in CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"

        # auth is on: without a key the page says one is needed
        expect(page.locator("#error")).to_contain_text("API key", timeout=WAIT)
        page.fill("#api-key", KEY)
        page.click("#key-save")
        expect(page.locator("#bot option")).to_have_text([ECHO, GPT, TOOLS], timeout=WAIT)
        expect(page.locator("#error")).to_be_hidden()

        page.select_option("#bot", GPT)
        status = page.locator("#bot-status")
        expect(status).to_contain_text("openai / fake-model", timeout=WAIT)
        expect(page.locator("#conversation-title")).to_have_text(
            "chat-1 (new: send a message to start it)", timeout=WAIT
        )
        send(page, "Hello there")
        reply = page.locator("#messages .msg-assistant").last
        expect(reply.locator(".body")).to_have_text(
            "[fake-model] be brief | Hello there", timeout=WAIT
        )
        assert int(reply.get_attribute("data-deltas") or 0) >= 5  # it came word by word
        usage = re.compile(r"^last turn: \d+ prompt \+ \d+ completion = \d+ tokens$")
        expect(page.locator("#usage")).to_have_text(usage, timeout=WAIT)
        expect(page.locator("#conversations .conv.current")).to_have_text("chat-1", timeout=WAIT)

        page.select_option("#bot", ECHO)  # another Bot: its own conversations
        expect(page.locator("#conversation-title")).to_have_text(
            "chat-1 (new: send a message to start it)", timeout=WAIT
        )
        expect(bodies(page)).to_have_count(0)
        send(page, "Hi echo")
        expect(bodies(page)).to_have_text(["Hi echo", "echo: Hi echo"], timeout=WAIT)

        page.reload()  # the Bot and conversation open before, with their history
        expect(page.locator("#bot")).to_have_value(ECHO, timeout=WAIT)
        expect(page.locator("#conversations .conv")).to_have_text(["chat-1"], timeout=WAIT)
        expect(bodies(page)).to_have_text(["Hi echo", "echo: Hi echo"], timeout=WAIT)
        page.select_option("#bot", GPT)
        history = ["Hello there", "[fake-model] be brief | Hello there"]
        expect(bodies(page)).to_have_text(history, timeout=WAIT)
        # status, model, generation, store revision, served revision (loaded: the store's)
        served = ["active", "openai / fake-model", "1", "2", "2"]
        expect(status.locator("dd")).to_have_text(served, timeout=WAIT)
        assert page.evaluate("() => sessionStorage.getItem('kubebots.apiKey')") == KEY
        assert page.evaluate("() => localStorage.length") == 0  # the key is never kept longer

        send(page, "And now?")
        expect(bodies(page)).to_have_text(
            [*history, "And now?", "[fake-model] be brief | And now?"], timeout=WAIT
        )
        expect(page.locator("#usage")).to_have_text(usage, timeout=WAIT)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, animations="disabled", caret="hide")
        print(f"console screenshot written to {SCREENSHOT}")


def test_console_without_auth_approves_tool_calls_and_shows_text_as_text(
    tmp_path: Path, fake: FakeOpenAIServer, web: HttpToolServer, page: Page
) -> None:
    with running_app(
        store(tmp_path, fake, web), auth=False, ui=True, tool_egress="127.0.0.1"
    ) as server:
        page.goto(f"{server.url}/ui")
        expect(page.locator("#bot option")).to_have_text([ECHO, GPT, TOOLS], timeout=WAIT)
        expect(page.locator("#error")).to_be_hidden()

        page.select_option("#bot", TOOLS)
        expect(page.locator("#conversation-title")).to_contain_text("chat-1", timeout=WAIT)
        send(page, 'call weather {"city": "Paris"}')
        approvals = page.locator("#approvals")
        expect(approvals).to_contain_text('weather({"city": "Paris"})', timeout=WAIT)
        expect(page.locator("#usage")).to_contain_text("last turn", timeout=WAIT)
        approvals.get_by_role("button", name="Approve").click()
        expect(approvals).to_be_hidden(timeout=WAIT)
        result = page.locator("#messages .tool-result").last
        expect(result).to_contain_text('"temperature":21', timeout=WAIT)
        reply = page.locator("#messages .msg-assistant").last
        expect(reply).to_contain_text('echo: {"city":"Paris"', timeout=WAIT)

        page.select_option("#bot", ECHO)
        markup = '<img src=x onerror="window.pwned=1">'
        send(page, markup)
        expect(bodies(page)).to_have_text([markup, f"echo: {markup}"], timeout=WAIT)
        assert page.locator("#messages img").count() == 0
        assert page.evaluate("() => window.pwned === undefined")

        page.reload()
        page.select_option("#bot", TOOLS)
        calls = page.locator("#messages .tool-call")
        expect(calls).to_have_text([re.compile(r'weather\(\{"city": "Paris"\}\)')], timeout=WAIT)
        expect(page.locator("#messages .tool-result")).to_contain_text(
            ["weather returned"], timeout=WAIT
        )


def test_the_console_is_off_unless_enabled_and_its_files_are_cached_by_etag(
    tmp_path: Path, fake: FakeOpenAIServer, web: HttpToolServer
) -> None:
    url = store(tmp_path, fake, web)
    with running_app(url) as server:
        assert httpx.get(f"{server.url}/ui").status_code == 404
        assert httpx.get(f"{server.url}/ui/app.js").status_code == 404
    with running_app(url, ui=True) as server:
        script = httpx.get(f"{server.url}/ui/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert script.headers["cache-control"] == "no-cache"
        again = httpx.get(
            f"{server.url}/ui/app.js", headers={"If-None-Match": script.headers["etag"]}
        )
        assert (again.status_code, again.content) == (304, b"")
        missing = httpx.get(f"{server.url}/ui/secrets.txt")
        assert missing.status_code == 404 and json.loads(missing.text)["error"] == "NotFound"
        slash = httpx.get(f"{server.url}/ui/", follow_redirects=False)
        assert (slash.status_code, slash.headers["location"]) == (308, "/ui")


ROLLED = "default:r"  # a Bot under rollout: its stable generation 1, its candidate 2


def put_rollout(url: str) -> None:
    """The Bot's stable entry, and its candidate taking every new conversation (as the
    operator writes it: the rollout state in the candidate entry's annotation)."""
    spec = {"llm": {"provider": "echo"}, "rollout": {"steps": [{"weight": 100}]}}
    state = RolloutState("Progressing", 1, 0, 100, False, 1, time.time())

    async def write() -> None:
        store = await open_config_store(url, prefix="kubebots_")
        try:
            await store.put(ROLLED, spec, generation=1, uid="test")
            await store.put(
                candidate_id(ROLLED),
                {**spec, "systemPrompt": "the candidate"},
                generation=2,
                uid="test",
                annotations={ROLLOUT_ANNOTATION: state.to_annotation()},
            )
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs on this thread
        pool.submit(lambda: asyncio.run(write())).result()


def test_console_shows_the_rollout_and_the_generation_of_each_reply(
    tmp_path: Path, fake: FakeOpenAIServer, web: HttpToolServer, page: Page
) -> None:
    url = store(tmp_path, fake, web)
    put_rollout(url)
    with running_app(url, auth=False, ui=True) as server:
        deadline = time.monotonic() + 20
        while not httpx.get(f"{server.url}/bots/{ROLLED}").json()["rollout"]:
            assert time.monotonic() < deadline, "the runtime never saw the rollout"
            time.sleep(0.05)
        page.goto(f"{server.url}/ui")
        expect(page.locator("#bot option")).to_have_text([ECHO, GPT, ROLLED, TOOLS], timeout=WAIT)
        page.select_option("#bot", ROLLED)
        rollout = page.locator("#bot-status dd.rollout")
        expect(rollout).to_have_text("step 1, 100% to generation 2 (stable 1)", timeout=WAIT)
        expect(rollout).to_have_attribute("data-phase", "Progressing")

        send(page, "hello")  # a new conversation: the candidate's (weight 100)
        reply = page.locator("#messages .msg-assistant").last
        expect(reply.locator(".body")).to_have_text("echo: hello", timeout=WAIT)
        expect(reply).to_have_attribute("data-generation", "2", timeout=WAIT)
        expect(reply.locator(".role .gen")).to_have_text("gen 2")
        page.reload()  # the history keeps each reply's generation
        expect(bodies(page)).to_have_text(["hello", "echo: hello"], timeout=WAIT)
        expect(page.locator("#messages .msg-assistant .gen")).to_have_text(["gen 2"])
        expect(page.locator("#messages .msg-user .gen")).to_have_count(0)

        page.select_option("#bot", ECHO)  # no rollout: no rollout row
        expect(page.locator("#bot-status")).to_contain_text("echo / echo", timeout=WAIT)
        expect(page.locator("#bot-status dd.rollout")).to_have_count(0)
        # the other states, in the words the page's own module writes
        lines = page.evaluate(
            """async () => {
              const { rolloutText } = await import("/ui/render.js");
              const base = { stableGeneration: 4, candidateGeneration: 5, attempt: 1 };
              return [
                { ...base, phase: "Progressing", step: 2, weight: 30, shadow: true },
                { ...base, phase: "RolledBack", step: 1, weight: 0, shadow: false, attempt: 2 },
              ].map(rolloutText);
            }"""
        )
        assert lines == [
            "step 2, shadow: 30% mirrored to generation 5 (stable 4)",
            "RolledBack: generation 5 (stable 4), attempt 2",
        ]
