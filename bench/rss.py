"""Resident memory per cached bot (echo + memory storage), each N in a fresh interpreter.

``python -m bench.rss N`` builds ``N`` bots in one :class:`BotManager` and prints
``<VmRSS before> <VmRSS after>`` in KiB (from /proc/self/status, after ``gc.collect()``);
:func:`rss_per_bot` runs that subprocess and turns it into KiB per bot.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kubebots.runtime import BotManager

from .backends import MEMORY_CONFIG, RUN_PREFIX

RSS_BOT_COUNTS = (1_000, 10_000)
WARMUP_BOTS = 20  # built before the baseline: imports, caches and the event loop settle
STATUS = Path("/proc/self/status")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 120


@dataclass(frozen=True)
class RssPerBot:
    bots: int
    before_kib: int
    after_kib: int

    @property
    def kib_per_bot(self) -> float:
        return (self.after_kib - self.before_kib) / self.bots


def vm_rss_kib() -> int:
    """This process's resident set size in KiB (``VmRSS`` of /proc/self/status)."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/self/status")


async def _measure(bots: int) -> tuple[int, int]:
    async with BotManager() as manager:
        for i in range(WARMUP_BOTS):
            await manager.get_or_create(f"{RUN_PREFIX}-rss-warm-{i}", MEMORY_CONFIG)
        gc.collect()
        before = vm_rss_kib()
        for i in range(bots):
            await manager.get_or_create(f"{RUN_PREFIX}-rss-{i}", MEMORY_CONFIG)
        gc.collect()
        after = vm_rss_kib()
        if manager.get_bot_count() != bots + WARMUP_BOTS:
            raise RuntimeError("bots were evicted during the RSS measurement")
    return before, after


def rss_per_bot(bots: int) -> RssPerBot:
    """Run ``python -m bench.rss <bots>`` in a fresh interpreter and parse its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss", str(bots)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.rss {bots} failed:\n{done.stderr.strip()}")
    before, after = (int(x) for x in done.stdout.split())
    return RssPerBot(bots, before, after)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m bench.rss N   (N >= 1 bots)", file=sys.stderr)
        return 2
    before, after = asyncio.run(_measure(int(argv[0])))
    print(before, after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
