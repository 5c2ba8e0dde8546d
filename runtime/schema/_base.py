"""The base model every schema class shares: camelCase and snake_case in, unknown keys out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

#: An environment variable name (POSIX portable set).
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class SchemaModel(BaseModel):
    """Accepts the CR's camelCase and the seed's snake_case; rejects unknown keys.

    Frozen so a parsed config can be shared between a bot and the manager without copies.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        validate_default=False,
    )
