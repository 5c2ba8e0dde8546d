"""The admission every bot route shares: who is calling, within which limits, to which bot.

A request to a bot passes these checks in this order, whatever the route, so a refused request
gets the same status everywhere:

1. the client id: the API key's (a different ``client_id`` claimed in the body or the query is
   a 403); without authentication the claimed one, else ``anonymous``;
2. the client's token budget, for chat turns only (429);
3. the client's request rate (429 with ``Retry-After``);
4. the client's allow-list: a bot it may not use is a 404 (for this client it does not exist).

Each router turns its inputs into one :func:`admit` call in a dependency, which then opens what
the routes need: the built bot for a turn (:func:`open_turn`), or only the bot's stored
conversations for a read (:func:`open_conversations`: no bot, no LLM client). A route's
dependency declares every parameter the route has that can be invalid: FastAPI runs a route's
dependencies before it validates the route's own parameters, and an invalid request must be a
422 before anything is admitted (or counted against a limit).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from ...bot import DynaBot
from ...bot_conversations import BotConversations
from ...context import BotContext
from ...errors import StorageError
from ..http_errors import BotNotFoundError
from .client_limits import charge_tokens, check_tokens, limit_requests
from .security import Caller
from .state import RuntimeState

Body = TypeVar("Body")
log = logging.getLogger("kubebots.runtime.api")


async def admit(
    state: RuntimeState,
    caller: Caller,
    bot_id: str,
    *,
    claimed_client_id: str | None,
    turn: bool,
) -> str:
    """Run the checks of the module's docstring in their order (``turn``: a chat turn, which
    spends tokens); return the request's client id."""
    client_id = caller.client_id(claimed_client_id)
    if turn:
        await check_tokens(state, caller, client_id)
    await limit_requests(state, caller, client_id)
    if not caller.may_use(bot_id):
        raise BotNotFoundError(bot_id)
    return client_id


@dataclass(frozen=True, slots=True)
class BotTurn(Generic[Body]):
    """A chat turn admitted: what the client sent (``body``), for which client, to which bot."""

    body: Body
    client_id: str
    bot: DynaBot
    state: RuntimeState
    caller: Caller

    async def charge(self, tokens: int) -> None:
        """Charge the finished turn's tokens to the client's budget.

        The turn is already answered and stored: a charge that fails (the limiter's database
        is down) must not turn it into an error the client would retry, storing the turn twice.
        It is logged, naming the limiter, and counted; the budget undercounts by that turn.
        """
        try:
            await charge_tokens(self.state, self.caller, self.client_id, tokens)
        except StorageError as exc:
            self.state.metrics.uncharged_turns.inc()
            log.warning(
                "could not charge %d tokens to client %s (%s is unavailable): %s",
                tokens,
                self.client_id,
                exc.component,
                exc.message,
            )


async def open_turn(
    state: RuntimeState, caller: Caller, bot_id: str, body: Body, *, claimed_client_id: str | None
) -> BotTurn[Body]:
    """Admit a chat turn, then get (or build) its bot."""
    client_id = await admit(state, caller, bot_id, claimed_client_id=claimed_client_id, turn=True)
    bot = await state.manager.get_or_create(bot_id)
    return BotTurn(body, client_id, bot, state, caller)


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
    client_id = await admit(state, caller, bot_id, claimed_client_id=claimed_client_id, turn=False)
    async with state.manager.conversations(bot_id) as conversations:
        yield ConversationAccess(bot_id, client_id, conversations)
