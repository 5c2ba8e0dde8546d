"""Credentials never reach a message: URL secrets found in every spelling, and masked."""

from __future__ import annotations

import pytest

from kubebots.runtime.persistence.redaction import redact, url_secrets, url_without_password


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("postgresql://:pw@h/db", "postgresql://h/db"),
        ("postgresql://h/db?password=pw&sslmode=x", "postgresql://h/db?sslmode=x"),
        ("postgresql://h/db?password=pw", "postgresql://h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_url_without_password(url: str, public: str) -> None:
    assert url_without_password(url) == public


def test_redaction_covers_raw_and_decoded_secrets() -> None:
    secrets = url_secrets("postgresql://al%69ce:p%40ss@h/db")
    shown = redact('role "alice" / p@ss / al%69ce / p%40ss', secrets)
    assert shown == 'role "***" / *** / *** / ***'
    keyword = url_secrets("host=h user=bob password='s3 cret'")
    assert redact("bob said s3 cret", keyword) == "*** said ***"


def test_longer_secrets_are_masked_first() -> None:
    """A password containing the user name is masked whole, never left half shown."""
    secrets = url_secrets("postgresql://bob:bobby-tables@h/db")
    assert secrets == ["bobby-tables", "bob"]
    assert redact("auth failed for bobby-tables", secrets) == "auth failed for ***"


def test_a_url_without_credentials_has_no_secrets() -> None:
    assert url_secrets("postgresql://h:5432/db?sslmode=require") == []
    assert redact("nothing to hide", []) == "nothing to hide"


def test_only_the_secret_spans_are_masked() -> None:
    """A short user name is masked where it stands alone, never inside other words."""
    secrets = url_secrets("postgresql://u:pw@h/db")
    text = 'invalid value for user "u" at postgresql://u:pw@h/db (pw)'
    assert (
        redact(text, secrets) == 'invalid value for user "***" at postgresql://***:***@h/db (***)'
    )


@pytest.mark.parametrize("name", ["password", "pass%77ord", "PASSWORD", "sslpassword"])
def test_encoded_password_parameters_are_found_and_dropped(name: str) -> None:
    url = f"postgresql://h/db?sslmode=require&{name}=s3cret-value"
    assert "s3cret-value" in url_secrets(url)
    assert url_without_password(url) == "postgresql://h/db?sslmode=require"
