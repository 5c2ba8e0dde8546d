"""The one guard for background loops that must outlive a defect in one of their rounds.

A loop that sends charges, retries builds or moves rollouts on runs for the process' life; an
unexpected exception in one round (a bug: the errors the round expects, a store or an API
failing, are handled inside it) must not end the loop and, with it, every later round. It is
logged with its traceback, never swallowed silently, and the loop goes on. Cancellation passes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def outliving_defects(log: logging.Logger, what: str, *args: object) -> Iterator[None]:
    """Run one round of a loop; a defect in it is logged (``what % args``, with the
    traceback) and the loop's next round runs."""
    try:
        yield
    except Exception:  # the one place a defect is caught: logged with its traceback
        log.exception(what, *args)
