"""Routing one turn of a Bot under rollout.

A conversation's generation is decided once, on its first turn, by a stable hash of (Bot,
client, conversation) against the step's weight; from then on the generation that answered it
(recorded on its stored messages) keeps answering it until the rollout ends, so raising the
weight only sends *new* conversations to the candidate. Requests without a conversation (``/v1``
stateless) are routed by the request's own key. In shadow mode every turn is answered by the
stable generation and the weight's share of conversations is also mirrored to the candidate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from .table import ActiveRollout

#: Buckets per percent point of weight: a weight of ``w`` percent takes ``w * 100`` of 10,000.
BUCKETS: Final = 10_000


def bucket(*parts: str) -> int:
    """A stable bucket in ``0..9999`` of ``parts`` (the same on every replica and restart)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Route:
    """Where a turn goes: the BotManager key to answer it, and what to count it as."""

    entry_id: str  # the Bot's id, or its candidate entry's id
    candidate: bool  # answered by the candidate generation
    #: the generation answering (None: no rollout, whatever the replica has loaded)
    generation: int | None = None
    window: str | None = None  # the rollout window the turn counts in (None: no rollout)
    mirror: bool = False  # shadow: also run the turn on the candidate, reply discarded
    candidate_id: str | None = None  # the candidate's BotManager key (for a mirror)
    candidate_generation: int | None = None


def _stable(rollout: ActiveRollout, mirror: bool = False) -> Route:
    return Route(
        rollout.bot_id,
        False,
        rollout.stable_generation,
        rollout.state.window,
        mirror,
        rollout.candidate_id,
        rollout.candidate_generation,
    )


def choose(
    rollout: ActiveRollout | None,
    bot_id: str,
    *,
    client_id: str,
    conversation_id: str | None,
    request_key: str = "",
    started: bool = False,
    tag: int | None = None,
) -> Route:
    """Route a turn of ``bot_id``.

    ``conversation_id`` None: a stateless request, routed by ``request_key``. Otherwise
    ``started`` says whether the conversation has stored messages and ``tag`` which generation
    answered its last one (None: untagged, written before any rollout: stable).
    """
    if rollout is None or not rollout.state.active:
        return Route(bot_id, False) if rollout is None else _stable(rollout)
    threshold = rollout.state.weight * (BUCKETS // 100)
    if conversation_id is None:
        drawn = bucket(bot_id, client_id, "request", request_key) < threshold
    elif started and not rollout.state.shadow:
        drawn = tag == rollout.candidate_generation
    else:
        drawn = bucket(bot_id, client_id, conversation_id) < threshold
    if rollout.state.shadow:
        return _stable(rollout, mirror=drawn)
    if not drawn:
        return _stable(rollout)
    return Route(
        rollout.candidate_id,
        True,
        rollout.candidate_generation,
        rollout.state.window,
        False,
        rollout.candidate_id,
        rollout.candidate_generation,
    )
