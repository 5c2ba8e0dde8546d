"""Which generation of a Bot answers a turn while the Bot is under rollout, and what each
generation's turns measured (reported to the store, judged by the operator).

:class:`RolloutTable` holds the rollouts this replica knows (fed by the store sync from the
candidate entries); :func:`choose` routes one turn; :class:`RolloutCounters` counts turns per
generation and window for the replica report.
"""

from .choose import Route, bucket, choose
from .counters import RolloutCounters
from .table import ActiveRollout, RolloutTable

__all__ = [
    "ActiveRollout",
    "RolloutCounters",
    "RolloutTable",
    "Route",
    "bucket",
    "choose",
]
