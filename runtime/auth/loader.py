"""Reading API key sources (a YAML/JSON file, a JSON string) into ``{digest: Principal}``.

Validation errors name the field path (``clients.0.keys.1``) and the reason, never the value:
neither pydantic's input echo nor a YAML parser's snippet of the offending line reaches a message.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, ValidationError
from pydantic.alias_generators import to_camel

from ..errors import ConfigurationError
from ..schema.parse import describe, field_errors
from .keys import ADMIN_CLIENT_ID, DIGEST_PREFIX, Principal, hash_key

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: The weakest plaintext key accepted: a guessable key defeats every other control. 16
#: characters of a random base64 alphabet are 96 bits; `kubebots init-credentials` and
#: `openssl rand -base64 32` give far more. (A digest's strength cannot be checked.)
MIN_KEY_CHARS = 16
MIN_DISTINCT_CHARS = 8
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def to_digest(key: str) -> str:
    """``key`` as a digest: a ``sha256:`` digest is normalised, anything else is hashed."""
    if not key:
        raise ValueError("must not be empty")
    if key != key.strip():
        raise ValueError("must not start or end with whitespace")
    if key.startswith(DIGEST_PREFIX):
        hexdigest = key.removeprefix(DIGEST_PREFIX)
        if not _HEX_DIGEST.fullmatch(hexdigest):
            raise ValueError("a sha256: digest must be followed by 64 hexadecimal characters")
        return DIGEST_PREFIX + hexdigest.lower()
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(f"is too short: use at least {MIN_KEY_CHARS} random characters")
    if len(set(key)) < MIN_DISTINCT_CHARS:
        raise ValueError(f"is too weak: use at least {MIN_DISTINCT_CHARS} different characters")
    try:
        return hash_key(key)
    except UnicodeEncodeError:  # holds the key: not chained
        reason = "must be valid Unicode text"
    raise ValueError(reason)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", frozen=True, strict=True)


class _Client(_Model):
    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
    keys: list[Annotated[str, AfterValidator(to_digest)]] = Field(min_length=1)
    bots: list[Annotated[str, Field(min_length=1)]] | None = None
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    admin: bool = False

    def principal(self) -> Principal:
        bots = None if self.bots is None else tuple(self.bots)
        return Principal(
            self.client_id, bots, self.requests_per_minute, self.tokens_per_minute, self.admin
        )


class _KeyFile(_Model):
    clients: list[_Client]


def _decode(text: str, *, as_json: bool, source: str) -> Any:
    """The document in ``text``; parse errors give a position, never the offending text.

    Errors are raised outside the ``except`` block, so they carry no ``__context__`` (the
    parser's exception, which quotes the document) either.
    """
    try:
        return json.loads(text) if as_json else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        error = ConfigurationError(f"{source} is not valid JSON ({where}): {exc.msg}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = _QUOTED.sub("'...'", str(getattr(exc, "problem", "") or "syntax error"))
        error = ConfigurationError(f"{source} is not valid YAML{where}: {problem}")
    raise error


def _read_file(path: Path) -> tuple[str, str]:
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError:  # holds the file's bytes: not chained
        error = ConfigurationError(f"API key file {path} is not UTF-8 text")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        error = ConfigurationError(f"cannot read API key file {path}: {reason}")
    raise error


def _validate(document: Any, source: str) -> list[_Client]:
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{source} must be a mapping with a 'clients' list",
            errors=[("(root)", "must be a mapping with a 'clients' list")],
        )
    try:
        return _KeyFile.model_validate(document).clients
    except ValidationError as exc:  # its text and context quote the input: not chained
        errors = field_errors(exc)
    raise ConfigurationError(f"invalid API keys in {source}: {describe(errors)}", errors=errors)


def _admin_digest(admin_key: str) -> str:
    try:
        return to_digest(admin_key)
    except ValueError as exc:
        reason = str(exc)
    raise ConfigurationError(f"invalid admin key: {reason}", errors=[("adminKey", reason)])


def load_principals(
    path: str | Path | None = None, *, json_text: str | None = None, admin_key: str | None = None
) -> dict[str, Principal]:
    """``{digest: Principal}`` for every key in the sources given (see :meth:`KeyRing.load`)."""
    sources: list[tuple[str, list[_Client]]] = []
    if path is not None:
        text, source = _read_file(Path(path))
        document = _decode(text, as_json=Path(path).suffix.lower() == ".json", source=source)
        sources.append((source, _validate(document, source)))
    if json_text is not None:
        source = "API key JSON text"
        sources.append((source, _validate(_decode(json_text, as_json=True, source=source), source)))
    principals: dict[str, Principal] = {}
    if admin_key is not None:
        principals[_admin_digest(admin_key)] = Principal(ADMIN_CLIENT_ID, admin=True)
    for source, clients in sources:
        errors = _merge(clients, principals)
        if errors:
            raise ConfigurationError(
                f"invalid API keys in {source}: {describe(errors)}", errors=errors
            )
    return principals


def _merge(clients: list[_Client], principals: dict[str, Principal]) -> list[tuple[str, str]]:
    """Add ``clients`` to ``principals``; return the clashes as ``(field, reason)``."""
    errors: list[tuple[str, str]] = []
    taken = {p.client_id for p in principals.values()}
    for i, client in enumerate(clients):
        if client.client_id in taken:
            reason = "this client id is already defined"
            if client.client_id == ADMIN_CLIENT_ID:
                reason += " (it is reserved for the admin key)"
            errors.append((f"clients.{i}.clientId", reason))
            continue
        taken.add(client.client_id)
        principal = client.principal()
        for j, digest in enumerate(client.keys):
            owner = principals.get(digest)
            if owner is not None:
                reason = f"this key already belongs to client '{owner.client_id}'"
                errors.append((f"clients.{i}.keys.{j}", reason))
            else:
                principals[digest] = principal
    return errors
