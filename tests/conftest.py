"""Shared fixtures. Services are real: PostgreSQL must be up (``.ci/run`` starts it)."""

from __future__ import annotations

import pytest

#: The real PostgreSQL every postgres test talks to (trust auth, database ``test``).
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return POSTGRES_URL
