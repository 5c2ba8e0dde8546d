"""The admission every bot route shares: who is calling, within which limits, to which bot.

A request to a bot passes these checks in this order, whatever the route, so a refused request
gets the same status everywhere:

1. the client id: the API key's (a different ``client_id`` claimed in the body or the query is
   a 403); without authentication the claimed one, else ``anonymous``;
2. the client's token budget, for chat turns only, and its request rate, in one limiter call
   (:mod:`.quota`; 429 with ``Retry-After``, a budget refusal taking no request slot);
3. the client's allow-list: a bot it may not use is a 404 (for this client it does not exist);
   so is a Bot's candidate entry (``NAMESPACE:NAME@candidate``), which is internal: a turn
   reaches the candidate only by the rollout's routing (:mod:`.rollout_turns`).

Each router turns its inputs into one :func:`admit` call in a dependency, which then opens what
the routes need: the built bot for a turn (:func:`open_turn`), or only the bot's stored
conversations for a read (:func:`open_conversations`: no bot, no LLM client). A route's
dependency declares every parameter the route has that can be invalid: FastAPI runs a route's
dependencies before it validates the route's own parameters, and an invalid request must be a
422 before anything is admitted (or counted against a limit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import Request

from ...bot import DynaBot
from ...bot_conversations import BotConversations
from ...configstore.rollout import is_candidate
from ...context import BotContext
from ...llm.base import ChatMessage, Usage
from ...llm.echo import estimate_usage
from ...ratelimit import Decision
from ..http_errors import BotNotFoundError
from .rollout_turns import RoutedTurn, mirror, route_turn
from .security import Caller
from .state import RuntimeState

Body = TypeVar("Body")


async def admit(
    state: RuntimeState,
    caller: Caller,
    bot_id: str,
    *,
    claimed_client_id: str | None,
    turn: bool,
) -> Admission:
    """Run the checks of the module's docstring in their order (``turn``: a chat turn, which
    spends tokens)."""
    client_id = caller.client_id(claimed_client_id)
    decision = await state.quota.admit(caller, client_id, turn=turn)
    if not caller.may_use(bot_id) or is_candidate(bot_id):
        raise BotNotFoundError(bot_id)
    return Admission(client_id, decision)


@dataclass(frozen=True, slots=True)
class Admission:
    """Who a request is for, and the limiter's decision that admitted it (``None``: the client
    has no limits), whose figures /v1 sends as ``x-ratelimit-*`` headers."""

    client_id: str
    decision: Decision | None


@dataclass(frozen=True, slots=True)
class BotTurn(Generic[Body]):
    """A chat turn admitted: what the client sent (``body``), for which client, to which bot,
    the limiter's ``decision`` that admitted it (``None``: no limits), and for a Bot under
    rollout where the turn went (``routed``: counted once by :meth:`answered` or
    :meth:`failed`; None: no rollout, nothing to count)."""

    body: Body
    client_id: str
    bot: DynaBot
    state: RuntimeState
    caller: Caller
    decision: Decision | None = None
    routed: RoutedTurn | None = None

    @property
    def generation(self) -> int | None:
        """The Bot generation answering the turn (when known): the routed one during a
        rollout. The middleware sends it as ``X-Kubebots-Generation`` with the answer, an error
        answer included (:meth:`mark`)."""
        routed = self.routed
        return routed.generation if routed is not None else self.bot.generation

    def mark(self, request: Request) -> BotTurn[Body]:
        """Record the turn's generation on the request, for the response's header."""
        request.state.generation = self.generation
        return self

    def answered(self, reply: str, tokens: int) -> None:
        """Count the answered turn (a Bot under rollout only)."""
        if self.routed is not None:
            self.routed.answered(reply, tokens)

    def failed(self, exc: BaseException) -> None:
        """Count the turn that raised ``exc`` (a Bot under rollout only; server errors only)."""
        if self.routed is not None:
            self.routed.failed(exc)

    def mirror(self, new: list[ChatMessage], *, history: list[ChatMessage] | None = None) -> None:
        """After the answered turn, run it on the candidate too when the rollout mirrors it
        (:func:`.rollout_turns.mirror`)."""
        if self.routed is not None and self.routed.route.mirror:
            state = self.state
            mirror(state.shadows, state.manager, self.routed, new, history=history)

    def charge(self, tokens: int) -> None:
        """Charge the finished turn's tokens to the client's budget, exactly once per turn.

        The charge is sent after the reply (:mod:`.charges`): a charge that fails (the limiter's
        storage is down) never turns the answered, stored turn into an error the client would
        retry; it is logged and counted, and the budget undercounts by that turn.
        """
        self.state.quota.charge(self.caller, self.client_id, tokens)


@dataclass(slots=True)
class StreamCharge:
    """A streamed turn's tokens, charged once when its stream ends, however it ends.

    The provider's usage when it reports one (:meth:`reported`, its ``on_usage``), else an
    estimate in words, as the echo provider counts: the prompt's messages plus the deltas sent
    (:attr:`parts`). A stream cut short is charged for what was generated.
    """

    turn: BotTurn[Any]
    prompt: list[str]
    parts: list[str] = field(default_factory=list)
    _reported: Usage | None = None
    _sent: bool = False

    def reported(self, usage: Usage) -> None:
        self._reported = usage

    @property
    def estimated(self) -> bool:
        """Whether the provider reported no usage (the charge is the words estimate)."""
        return self._reported is None

    def usage(self) -> Usage:
        if self._reported is not None:
            return self._reported
        return estimate_usage(self.prompt, "".join(self.parts))

    def send(self) -> None:
        """Charge the turn (a second call does nothing)."""
        if not self._sent:
            self._sent = True
            self.turn.charge(self.usage().total_tokens)


async def open_turn(
    state: RuntimeState,
    caller: Caller,
    bot_id: str,
    body: Body,
    *,
    claimed_client_id: str | None,
    conversation_id: str | None,
    request_key: str,
) -> BotTurn[Body]:
    """Admit a chat turn, then get (or build) the bot that answers it: the Bot's own, or for a
    Bot under rollout the generation its routing picks (:func:`.rollout_turns.route_turn`;
    ``conversation_id`` None: a stateless request, routed by ``request_key``)."""
    admission = await admit(state, caller, bot_id, claimed_client_id=claimed_client_id, turn=True)
    client_id = admission.client_id
    rollout = state.rollouts.get(bot_id)
    if rollout is None or not rollout.state.active:  # no candidate takes traffic
        bot = await state.manager.get_or_create(bot_id)
        return BotTurn(body, client_id, bot, state, caller, admission.decision)
    bot, routed = await route_turn(
        state.manager,
        state.rollout_counters,
        rollout,
        client_id=client_id,
        conversation_id=conversation_id,
        request_key=request_key,
    )
    return BotTurn(body, client_id, bot, state, caller, admission.decision, routed)


@dataclass(frozen=True, slots=True)
class ConversationAccess:
    """A client's conversations with one bot, admitted, reached without building the bot."""

    bot_id: str
    client_id: str
    conversations: BotConversations

    def context(self, conversation_id: str) -> BotContext:
        """The client's conversation ``conversation_id``."""
        return BotContext(conversation_id, self.client_id)


@asynccontextmanager
async def open_conversations(
    state: RuntimeState, caller: Caller, bot_id: str, *, claimed_client_id: str | None
) -> AsyncIterator[ConversationAccess]:
    """Admit a read of the client's conversations, then reach them for the block's duration
    (an unknown bot is a 404, as for a turn)."""
    admission = await admit(state, caller, bot_id, claimed_client_id=claimed_client_id, turn=False)
    async with state.manager.conversations(bot_id) as conversations:
        yield ConversationAccess(bot_id, admission.client_id, conversations)
