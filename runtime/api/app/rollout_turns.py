"""A chat turn of a Bot under rollout: which generation answers it, what it measured, its mirror.

The routes (``/chat``, ``/chat/stream``, ``/v1/chat/completions``) admit a turn for the Bot the
client named, then :func:`route_turn` asks the :class:`~kubebots.runtime.routing.RolloutTable`
(one dict lookup; a Bot without a rollout costs nothing more) and, for a Bot under rollout,
routes it with :func:`~kubebots.runtime.routing.choose`: a started conversation keeps the
generation its last stored message names (one ``recent(key, 1)`` read), a new one is drawn by
its hash, ``/v1`` without a conversation by its request id. The answer says who served it
(``X-Kubebots-Generation``, sent by the middleware).

Each routed turn is counted once, when it ends (:class:`RoutedTurn`): answered (its wall time,
prompt + completion tokens, whether the rollout's flag pattern matches the reply) or failed
with a server-side error (:func:`is_server_error`: the LLM, a timeout, a tool, a 5xx). A turn
refused as the client's fault (4xx) reached no model and is not counted, nor is a stream the
client left. In shadow mode the stable turn's messages are then mirrored to the candidate
(:func:`mirror`, bounded by :class:`~.rollout_shadow.ShadowMirrors`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...bot import DynaBot
from ...context import BotContext
from ...conversations.base import StoredMessage
from ...errors import LLMBadRequestError, LLMError, ToolError
from ...llm.base import ChatMessage, Settings
from ...llm.echo import estimate_usage
from ...manager import BotManager
from ...routing import ActiveRollout, RolloutCounters, Route, choose
from ...turns import to_chat
from ..http_errors import as_api_error
from .rollout_shadow import ShadowMirrors

log = logging.getLogger("kubebots.runtime.api.rollout")


def is_server_error(exc: BaseException) -> bool:
    """Whether a turn that raised ``exc`` failed on the server's side: the LLM (but for its
    400, which the request's content caused), a timeout, a tool, or any 5xx. Cancellation (the
    client left) and the client's errors (4xx: invalid, too long, unknown) are not."""
    if not isinstance(exc, Exception) or isinstance(exc, LLMBadRequestError):
        return False
    if isinstance(exc, LLMError | ToolError):
        return True
    return as_api_error(exc).status_code >= 500


def is_flagged(flag: re.Pattern[str] | None, reply: str) -> bool:
    """Whether the rollout's ``flagReplyPattern`` matches ``reply`` (applied to the replies of
    both generations alike)."""
    return flag is not None and flag.search(reply) is not None


@dataclass(slots=True)
class RoutedTurn:
    """A turn of a Bot under rollout, counted once when it ends (:meth:`answered`,
    :meth:`failed`)."""

    bot_id: str  # the Bot the client named
    route: Route
    generation: int  # the generation that answers (the built bot's)
    counters: RolloutCounters
    flag: re.Pattern[str] | None
    #: a mirrored conversation turn: the conversation's window before this turn
    window: list[ChatMessage] | None = None
    started: float = field(default_factory=time.monotonic)
    _counted: bool = False

    def answered(self, reply: str, tokens: int) -> None:
        """The turn answered ``reply``, spending ``tokens`` (prompt + completion)."""
        self._record(tokens=tokens, flagged=is_flagged(self.flag, reply))

    def failed(self, exc: BaseException) -> None:
        """The turn raised ``exc``: counted when it is a server-side error."""
        if is_server_error(exc):
            self._record(error=True)

    def _record(self, *, tokens: int = 0, error: bool = False, flagged: bool = False) -> None:
        window = self.route.window
        if self._counted or window is None:
            return
        self._counted = True
        self.counters.record(
            self.bot_id,
            self.generation,
            window,
            latency_s=time.monotonic() - self.started,
            tokens=tokens,
            error=error,
            flagged=flagged,
            candidate=self.route.candidate,
        )


def _prompt_window(recent: Sequence[StoredMessage]) -> list[ChatMessage]:
    """``recent`` as a prompt's history; ``tool`` messages whose call is older are left out."""
    start = 0
    while start < len(recent) and recent[start].role == "tool":
        start += 1
    return [to_chat(m) for m in recent[start:]]


async def route_turn(
    manager: BotManager,
    counters: RolloutCounters,
    rollout: ActiveRollout,
    *,
    client_id: str,
    conversation_id: str | None,
    request_key: str,
) -> tuple[DynaBot, RoutedTurn]:
    """Route a turn of ``rollout``'s Bot (module docstring); the bot that answers it and the
    turn to count. (A rollout whose candidate takes no traffic, rolled back or aborted, needs
    no routing: the caller asks the Bot's own bot then, and counts nothing.)"""
    started, tag, window = False, None, None
    stable: DynaBot | None = None
    context = BotContext(conversation_id, client_id) if conversation_id is not None else None
    if context is not None:
        stable = await manager.get_or_create(rollout.bot_id)
        if not rollout.state.shadow:  # shadow mode draws every turn by its hash alone
            last = await stable.recent_messages(context, 1)
            started, tag = bool(last), (last[-1].generation if last else None)
    route = choose(
        rollout,
        rollout.bot_id,
        client_id=client_id,
        conversation_id=conversation_id,
        request_key=request_key,
        started=started,
        tag=tag,
    )
    if route.mirror and stable is not None and context is not None:
        limit = max(stable.config.memory.max_messages, 1)
        window = _prompt_window(await stable.recent_messages(context, limit))
    generation = route.generation if route.generation is not None else 0
    routed = RoutedTurn(rollout.bot_id, route, generation, counters, rollout.flag, window)
    if stable is not None and route.entry_id == rollout.bot_id:
        bot = stable
    else:
        try:
            bot = await manager.get_or_create(route.entry_id)
        except BaseException as exc:  # a candidate that cannot be built fails its turns
            routed.failed(exc)
            raise
    routed.generation = bot.generation or generation
    routed.started = time.monotonic()  # the turn's own time, not the bot's build
    return bot, routed


def _tools_off(bot: DynaBot) -> Settings | None:
    """Settings asking ``bot``'s model to call none of its server tools (a shadow turn must not
    act on the world twice; a model that ignores ``tool_choice`` may still run them)."""
    return {"tool_choice": "none"} if bot.tools is not None and bot.tools.specs else None


async def _shadow_turn(
    manager: BotManager, routed: RoutedTurn, messages: list[ChatMessage]
) -> None:
    route = routed.route
    if route.candidate_id is None or route.window is None:
        return
    started = time.monotonic()
    generation = route.candidate_generation or 0
    try:
        candidate = await manager.get_or_create(route.candidate_id)
        generation = candidate.generation or generation
        completion = await candidate.complete_messages(messages, settings=_tools_off(candidate))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug(
            "bot %s: the shadow turn of generation %s failed: %s",
            routed.bot_id,
            generation,
            exc,
            exc_info=True,
        )
        if is_server_error(exc):
            routed.counters.record(
                routed.bot_id,
                generation,
                route.window,
                shadow=True,
                latency_s=time.monotonic() - started,
                error=True,
            )
        return
    usage = completion.usage or estimate_usage([m.content for m in messages], completion.content)
    routed.counters.record(
        routed.bot_id,
        generation,
        route.window,
        shadow=True,
        latency_s=time.monotonic() - started,
        tokens=usage.total_tokens,
        flagged=is_flagged(routed.flag, completion.content),
    )


def mirror(
    shadows: ShadowMirrors,
    manager: BotManager,
    routed: RoutedTurn,
    new: Sequence[ChatMessage],
    *,
    history: Sequence[ChatMessage] | None = None,
) -> None:
    """After a mirrored stable turn succeeded: run it on the candidate in the background.

    The candidate gets the messages the stable bot's prompt had: ``history`` (a stateless
    request's own), else the conversation's window read when the turn was routed, then the
    turn's ``new`` messages. A mirror beyond the replica's bound is dropped (counted)."""
    if not routed.route.mirror or not new:
        return
    before = list(history) if history is not None else list(routed.window or ())
    shadows.start(_shadow_turn(manager, routed, [*before, *new]))
