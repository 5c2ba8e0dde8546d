"""The table prefix: one per installation, shared by every store of it (the config store's
tables, the rate limiter's), so several installations can share one database.

Defined once for the settings of the runtime and the operator (``KUBEBOTS_TABLE_PREFIX``) and
for the stores that check what they are given.
"""

from __future__ import annotations

import re
from typing import Final

#: The prefix unless told otherwise.
DEFAULT_TABLE_PREFIX: Final = "kubebots_"
#: A plain lowercase SQL identifier (table names never need quoting rules) of at most 31
#: characters: every name a store appends (``replica_bots``, ``ratelimit_key``...) then stays
#: well within PostgreSQL's 63.
TABLE_PREFIX_PATTERN: Final = r"^[a-z_][a-z0-9_]{0,30}$"

_PREFIX = re.compile(TABLE_PREFIX_PATTERN)


def check_table_prefix(prefix: object) -> str:
    """``prefix`` if it follows :data:`TABLE_PREFIX_PATTERN`, else ValueError."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ValueError("prefix must match [a-z_][a-z0-9_]* and be at most 31 characters")
    return prefix
