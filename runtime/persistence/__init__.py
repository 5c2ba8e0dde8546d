"""Plumbing the database-backed stores share: the config store, conversations, rate limits.

Nothing here knows a store's tables or rules. :mod:`.redaction` keeps credentials out of every
message, :mod:`.checks` holds the argument checks every backend applies alike, :mod:`.times`
the conversions of timestamps, :mod:`.postgres` and :mod:`.sqlite` open connections whose
errors become the error class of their :mod:`.owner`, :mod:`.listen` keeps a ``LISTEN``
connection up for a store that caches, and :mod:`.deferred` opens a store on first use.
It imports :mod:`kubebots.runtime.errors` alone, so the stores stay independent of each other.
"""
