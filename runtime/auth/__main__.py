"""``python -m kubebots.runtime.auth``: print the ``sha256:`` digest of each key read.

Keys are read from standard input, one a line (a prompt without echo on a terminal), so they
never appear in the shell history or the process list.
"""

from __future__ import annotations

import getpass
import sys

from .keys import hash_key


def main() -> int:
    """Print one digest per non-empty input line; return the exit status."""
    tty = sys.stdin.isatty()
    lines = [getpass.getpass("API key: ")] if tty else sys.stdin.read().splitlines()
    keys = [line for line in lines if line]
    if not keys:
        print("no key given", file=sys.stderr)
        return 2
    for key in keys:
        print(hash_key(key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
