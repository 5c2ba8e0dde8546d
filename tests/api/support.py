"""Helpers for the API tests: an in-process client and the error-body contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI


def client_for(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """An httpx client talking to ``app`` in-process (no lifespan, no sockets)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def assert_error_body(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """The response is ``status`` with exactly the guide's four keys; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "message", "detail", "timestamp"}
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert body["detail"] is None or isinstance(body["detail"], dict)
    assert body["timestamp"].endswith("+00:00")
    stamp = datetime.fromisoformat(body["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    return body
