"""``python -m bench.peers.worker MEASURE SUBJECT [N]``: one measure, one side, one JSON line.

Runs in a fresh interpreter started by :func:`bench.peers.run`. Both sides get the same process
settings: root logging at WARNING (no debug logging on either side), DeprecationWarnings ignored
(dataknobs-bots' ``BotManager`` is deprecated upstream), one ``asyncio.run`` event loop. The
result dict gains ``measure``, ``subject`` and ``version`` and is printed as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from . import measures
from .subjects import Subject, make

Measure = Callable[[Subject], Awaitable[dict[str, Any]]]
MEASURES: dict[str, Measure] = {
    "cached": measures.cached,
    "new": measures.new,
    "chat": measures.chat,
    "turns": measures.turns,
    "single_flight": measures.single_flight,
}
USAGE = (
    "usage: python -m bench.peers.worker MEASURE SUBJECT [N]\n"
    f"  MEASURE: {' | '.join(MEASURES)} | rss (N bots required)\n"
    "  SUBJECT: kubebots | dataknobs-bots"
)


async def measure(name: str, subject: Subject, n: int | None) -> dict[str, Any]:
    if name == "rss":
        if n is None or n < 1:
            raise ValueError("rss needs N >= 1 bots")
        return await measures.rss(subject, n)
    if n is not None:
        raise ValueError(f"{name} takes no N")
    return await MEASURES[name](subject)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (argv[0] not in MEASURES and argv[0] != "rss"):
        print(USAGE, file=sys.stderr)
        return 2
    name, subject_name = argv[0], argv[1]
    n = int(argv[2]) if len(argv) == 3 else None
    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)
    subject = make(subject_name)
    result = asyncio.run(measure(name, subject, n))
    header = {"measure": name, "subject": subject.name, "version": subject.version()}
    print(json.dumps(header | result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
