"""The guide's singleton manager: init/get/reset, closing bots, and the route dependency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from kubebots.runtime import BotContext, BotManager
from kubebots.runtime.api import (
    BotManagerDep,
    BotManagerNotInitialisedError,
    get_bot_manager,
    init_bot_manager,
    manager_registry,
    register_exception_handlers,
    reset_bot_manager,
)

from .support import assert_error_body, client_for

ECHO = {"llm": {"provider": "echo"}, "limits": {"max_message_chars": 10}}
CTX = BotContext(conversation_id="c1", client_id="tenant-a")


def load(bot_id: str) -> dict[str, Any] | None:
    if bot_id == "broken":
        raise ValueError(f"Unknown bot: {bot_id}")
    return ECHO if bot_id.startswith("echo") else None


def test_get_before_init_raises_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not initialised"):
        get_bot_manager()
    with pytest.raises(BotManagerNotInitialisedError):
        get_bot_manager()


def test_init_returns_the_singleton_and_passes_kwargs() -> None:
    manager = init_bot_manager(config_loader=load, max_bots=1)
    assert isinstance(manager, BotManager)
    assert get_bot_manager() is manager

    async def fill() -> list[str]:
        await manager.get_or_create("echo-a")
        await manager.get_or_create("echo-b")  # max_bots=1 evicts echo-a
        return manager.list_bots()

    assert asyncio.run(fill()) == ["echo-b"]
    reset_bot_manager()


async def test_reset_in_a_loop_returns_the_closing_task() -> None:
    manager = init_bot_manager(config_loader=load)
    bot = await manager.get_or_create("echo-a")
    closing = reset_bot_manager()
    assert isinstance(closing, asyncio.Task)
    with pytest.raises(RuntimeError):
        get_bot_manager()
    await closing
    assert bot.closed
    assert manager.get_bot_count() == 0


async def test_reset_without_await_still_closes_the_bots() -> None:
    manager = init_bot_manager(config_loader=load)
    bot = await manager.get_or_create("echo-a")
    reset_bot_manager()  # as the guide's shutdown hook does
    await asyncio.wait_for(bot.wait_closed(), timeout=5)
    assert bot.closed
    for _ in range(100):  # the registry forgets the task once it is done
        if not manager_registry._REGISTRY.closing:
            break
        await asyncio.sleep(0.01)
    assert not manager_registry._REGISTRY.closing


def test_reset_without_a_loop_closes_before_returning() -> None:
    manager = init_bot_manager(config_loader=load)
    bot = asyncio.run(manager.get_or_create("echo-a"))
    done = reset_bot_manager()
    assert bot.closed
    assert manager.get_bot_count() == 0
    asyncio.run(_await(done))  # still awaitable


async def _await(awaitable: Any) -> None:
    await awaitable


async def test_reset_with_nothing_to_reset_is_awaitable() -> None:
    await reset_bot_manager()
    await reset_bot_manager()


async def test_init_again_replaces_and_closes_the_previous_manager() -> None:
    first = init_bot_manager(config_loader=load)
    bot = await first.get_or_create("echo-a")
    second = init_bot_manager(config_loader=load)
    assert get_bot_manager() is second is not first
    await asyncio.wait_for(bot.wait_closed(), timeout=5)
    await reset_bot_manager()


async def test_a_failing_close_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(BotManager):
        async def close(self) -> None:
            raise OSError("disk gone")

    manager_registry._REGISTRY.manager = Failing()
    with pytest.raises(OSError, match="disk gone"):
        await reset_bot_manager()
    await asyncio.sleep(0)  # the done callback runs
    assert "closing the bot manager failed" in caplog.text


# -- the route dependency ----------------------------------------------------------------------


def make_app() -> FastAPI:
    app = FastAPI()
    register_exception_handlers(app)

    @app.post("/bots/{bot_id}/chat")
    async def chat(bot_id: str, message: str, manager: BotManagerDep) -> dict[str, str]:
        bot = await manager.get_or_create(bot_id)
        return {"response": await bot.chat(message, CTX)}

    @app.get("/bots")
    async def bots(manager: BotManagerDep) -> list[str]:
        return manager.list_bots()

    return app


async def test_dependency_before_init_is_a_503() -> None:
    async with client_for(make_app()) as client:
        response = await client.get("/bots")
    body = assert_error_body(response, 503, "ServiceUnavailableError")
    assert "not initialised" in body["message"]


async def test_dependency_uses_the_singleton() -> None:
    manager = init_bot_manager(config_loader=load)
    async with client_for(make_app()) as client:
        response = await client.post("/bots/echo-a/chat", params={"message": "hi"})
        assert response.json() == {"response": "echo: hi"}
        assert (await client.get("/bots")).json() == ["echo-a"]
    assert manager.list_bots() == ["echo-a"]
    await reset_bot_manager()


async def test_dependency_prefers_the_apps_own_manager() -> None:
    singleton = init_bot_manager(config_loader=load)
    app = make_app()
    own = BotManager(config_loader=load)
    app.state.bot_manager = own
    async with client_for(app) as client:
        await client.post("/bots/echo-own/chat", params={"message": "hi"})
    assert own.list_bots() == ["echo-own"]
    assert singleton.list_bots() == []
    await own.close()
    await reset_bot_manager()


async def test_real_library_errors_through_the_dependency() -> None:
    init_bot_manager(config_loader=load)
    async with client_for(make_app()) as client:
        unknown = await client.post("/bots/nobody/chat", params={"message": "hi"})
        broken = await client.post("/bots/broken/chat", params={"message": "hi"})
        bad_id = await client.post("/bots/-bad-/chat", params={"message": "hi"})
        too_long = await client.post("/bots/echo-a/chat", params={"message": "x" * 11})
        empty = await client.post("/bots/echo-a/chat", params={"message": " "})
    assert assert_error_body(unknown, 404, "BotNotFoundError")["detail"] == {"bot_id": "nobody"}
    body = assert_error_body(broken, 500, "ConfigurationError")
    assert "Unknown bot: broken" in body["message"]
    assert_error_body(bad_id, 422, "ValidationError")
    body = assert_error_body(too_long, 422, "ValidationError")
    assert body["detail"]["max_message_chars"] == 10
    assert_error_body(empty, 422, "ValidationError")
    await reset_bot_manager()


@pytest.mark.parametrize("iterations_before_stop", [0, 1, 2, 3])
def test_reset_without_await_closes_the_bots_even_when_the_loop_stops(
    iterations_before_stop: int,
) -> None:
    # The guide's shutdown hook: reset_bot_manager() without await, then the loop stops (and
    # asyncio.run cancels every task) after a few more iterations.
    bots = []

    async def serve_then_shut_down() -> None:
        manager = init_bot_manager(config_loader=load)
        bots.extend([await manager.get_or_create("echo-a"), await manager.get_or_create("echo-b")])
        reset_bot_manager()
        for _ in range(iterations_before_stop):
            await asyncio.sleep(0)

    asyncio.run(serve_then_shut_down())
    assert [bot.closed for bot in bots] == [True, True]
