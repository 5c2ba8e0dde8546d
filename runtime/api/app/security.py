"""Who is calling: the API key's client (or nobody, with authentication off), and admins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ...auth import Principal
from ..http_errors import AuthenticationError, PermissionDeniedError, RateLimitError
from .state import StateDep

#: The client id used when authentication is off and the request names none.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """The authenticated principal, or ``None`` when authentication is off."""

    principal: Principal | None

    @property
    def admin(self) -> bool:
        return self.principal is None or self.principal.admin

    def may_use(self, bot_id: str) -> bool:
        return self.principal is None or self.principal.may_use(bot_id)

    def client_id(self, claimed: str | None) -> str:
        """The request's client id: the key's, never taken on trust from the body."""
        if self.principal is None:
            return claimed or ANONYMOUS
        if claimed is not None and claimed != self.principal.client_id:
            raise PermissionDeniedError(
                "client_id does not match the API key", detail={"field": "client_id"}
            )
        return self.principal.client_id


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def get_caller(request: Request, state: StateDep) -> Caller:
    if state.keyring is None:
        return Caller(None)
    address = request.client.host if request.client else "unknown"
    try:
        await state.failed_auth.check(address)
    except RateLimitError:
        state.metrics.rate_limited.labels(scope="auth-failures").inc()
        raise
    key = _presented_key(request)
    principal = state.keyring.authenticate(key) if key is not None else None
    if principal is None:
        await state.failed_auth.failed(address)
        if key is None:
            raise AuthenticationError("an API key is required (Authorization: Bearer <key>)")
        raise AuthenticationError("the API key is not valid")
    request.state.client_id = principal.client_id
    return Caller(principal)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise PermissionDeniedError("this route needs an admin key")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
