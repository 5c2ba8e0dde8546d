"""Credentials in URLs: found by parsing the URL the way its client will, never by substring.

A URL field of a Bot ends up in the CR, the config store, logs (the HTTP client logs every
request URL) and error messages, so it may not carry a secret. What counts is what the client
reads: the userinfo's password, and query parameters whose *decoded* name is a credential
(libpq reads ``pass%77ord=`` as ``password``; an HTTP endpoint reads ``api-key`` and ``api_key``
alike). Messages name the offending part, never its value.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

#: Query parameters that carry a credential to an OpenAI-compatible HTTP endpoint, compared
#: after decoding, lower-casing and dropping ``-``/``_`` (``api-key``, ``API_KEY``, ``apikey``).
HTTP_SECRET_PARAMS = frozenset(
    {
        "apikey",
        "key",
        "token",
        "accesstoken",
        "authtoken",
        "auth",
        "authorization",
        "password",
        "passwd",
        "pwd",
        "secret",
        "clientsecret",
        "sig",
        "signature",
    }
)


def _normalised(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def url_credentials(url: str, *, secret_params: frozenset[str]) -> list[str]:
    """What in ``url`` is a credential: ``"a password"`` and ``"query parameter 'x'"`` entries
    (the parameter's name as written, without its value); empty when the URL is clean."""
    parts = urlsplit(url)
    found: list[str] = []
    # ``rpartition``: the userinfo ends at the last "@" before the host, as clients read it.
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append("a password")
    names = {_normalised(name) for name in secret_params}
    for name, _value in parse_qsl(parts.query, keep_blank_values=True):
        if _normalised(name) in names:
            found.append(f"query parameter {name!r}")
    return found
