"""API keys: which client (tenant) a request comes from, and what that client may do.

Keys come from a YAML or JSON file (e.g. a mounted Kubernetes Secret) and/or a JSON string (the
caller reads an environment variable and passes its text in; nothing here reads the
environment). The format::

    clients:
      - clientId: tenant-a          # [A-Za-z0-9][A-Za-z0-9._:@-]*, at most 128 characters
        keys:                       # at least one; "sha256:<64 hex>" digests or plaintext keys
          - "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
          - "plain-key-value"       # hashed at load, the plaintext is dropped
        bots: ["default:support", "team-a:*"]   # optional allow-list (fnmatch patterns);
                                                # absent = every bot
        requestsPerMinute: 60       # optional, positive
        tokensPerMinute: 100000     # optional, positive
        admin: false                # optional; admin routes (DELETE /bots/...)

Keys are camelCase only and unknown keys are errors. A ``.json`` file is parsed as JSON, any
other file as YAML. A key (in either spelling) or a client id may appear only once across all
sources. A single ``admin_key`` may also be given: it authenticates as client ``"admin"`` with
admin rights, every bot and no limits (no client may then be called ``"admin"``).

Keys are held only as SHA-256 digests. ``python -m kubebots.runtime.auth`` reads keys from
standard input, one a line, and prints their digests for the file.
"""

from __future__ import annotations

from .keys import ADMIN_CLIENT_ID, KeyRing, Principal, hash_key

__all__ = ["ADMIN_CLIENT_ID", "KeyRing", "Principal", "hash_key"]
