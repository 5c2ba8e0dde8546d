"""Credentials out of messages: the secrets of a PostgreSQL URL, and text or URLs without them.

libpq and psycopg quote connection strings back in some errors, so every message built from a
driver error goes through :func:`redact` with the :func:`url_secrets` of the URL it used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote

_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)@")
_KEYWORD_SECRET = re.compile(r"\b(?:user|password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&#]+)")
#: libpq connection parameters that hold a secret, compared by their decoded name, as libpq
#: reads them (``pass%77ord`` is ``password``). The schema refuses them in Bot URLs.
POSTGRES_SECRET_PARAMS = frozenset({"password", "sslpassword"})
#: ... and the parameters whose values messages must not quote (who connects, too).
_SECRET_PARAMS = POSTGRES_SECRET_PARAMS | {"user"}


def _secret_param(item: str) -> bool:
    name = unquote(item.partition("=")[0]).strip().lower()
    return name in POSTGRES_SECRET_PARAMS


def url_secrets(dsn: str) -> list[str]:
    """User names and passwords in a PostgreSQL URL or ``key=value`` DSN, longest first.

    Both the raw and the percent-decoded spelling are returned, so :func:`redact` catches either.
    """
    found: list[str] = []
    authority = _AUTHORITY.match(dsn)
    if authority:
        user, _, password = authority.group(2).partition(":")
        found += [user, password]
    found += [m.group(1).strip("'") for m in _KEYWORD_SECRET.finditer(dsn)]
    _, _, query = dsn.partition("?")
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in _SECRET_PARAMS]
    expanded = {s for s in found if s} | {unquote(s) for s in found if s}
    return sorted(expanded, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***`` where it stands as a span of its own:
    not inside a longer run of letters and digits, so a short user name (``u``) leaves "value"
    whole while ``user "u"``, ``u:pw@host`` and ``missing_pw`` are masked."""
    for secret in secrets:
        span = rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])"
        text = re.sub(span, "***", text)
    return text


def url_without_password(url: str) -> str:
    """``url`` without the password in its user info or its query string."""
    authority = _AUTHORITY.match(url)
    if authority:
        user = authority.group(2).partition(":")[0]
        userinfo = f"{user}@" if user else ""
        url = f"{authority.group(1)}{userinfo}{url[authority.end() :]}"
    base, sep, query = url.partition("?")
    kept = [p for p in query.split("&") if not _secret_param(p)]
    return base + (sep + "&".join(kept) if any(kept) else "")
