"""The ``conversationStorage`` section: where conversation messages are kept."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ..persistence.redaction import POSTGRES_SECRET_PARAMS
from ._base import ENV_NAME_PATTERN, SchemaModel
from .urls import url_credentials


class _Retention(SchemaModel):
    """What every backend accepts: how long messages are kept."""

    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Delete this bot's messages older than this many days (unset: keep them "
        "forever). Enforced by the runtime as the bot stores turns, at most every 10 minutes "
        "per bot, so a conversation may lose its oldest turns while it goes on.",
    )


class MemoryStorageConfig(_Retention):
    """In-process storage: fast, lost when the process exits."""

    backend: Literal["memory"] = Field(
        default="memory",
        description="memory (in the process), sqlite (a file) or postgres (a database).",
    )


class SqliteStorageConfig(_Retention):
    """A SQLite file (the embedded default). Several processes may share it."""

    backend: Literal["sqlite"] = "sqlite"
    path: str = Field(
        default="kubebots-conversations.db",
        min_length=1,
        max_length=4096,
        description="The SQLite file (sqlite backend).",
    )


class PostgresStorageConfig(_Retention):
    """PostgreSQL. The URL may not hold a password: give one by ``urlEnv`` (or libpq's env)."""

    backend: Literal["postgres"] = "postgres"
    url: str | None = Field(
        default=None,
        max_length=4096,
        description="postgresql:// URL without a password, e.g. postgresql://bots@db:5432/bots",
    )
    url_env: str | None = Field(
        default=None,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable holding the full URL (may hold a password).",
    )
    pool_size: int = Field(
        default=5, ge=1, le=100, description="Connections per runtime replica (postgres backend)."
    )

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        found = url_credentials(value, secret_params=POSTGRES_SECRET_PARAMS)
        if found:
            raise ValueError(
                f"must not contain a password ({', '.join(found)}); use urlEnv for credentials"
            )
        return value

    @model_validator(mode="after")
    def _one_url_source(self) -> PostgresStorageConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of url and urlEnv")
        return self


ConversationStorageConfig = Annotated[
    MemoryStorageConfig | SqliteStorageConfig | PostgresStorageConfig,
    Field(discriminator="backend"),
]
