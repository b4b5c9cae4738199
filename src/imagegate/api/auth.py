"""Bearer-key authentication for /v1 routes."""

from __future__ import annotations

from starlette.requests import Request

from imagegate.core.accounts import Caller
from imagegate.core.errors import AuthenticationFailed
from imagegate.db.accounts import AccountStore


async def authenticate(request: Request, accounts: AccountStore) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed("Missing API key. Send 'Authorization: Bearer sk-…'.")
    return await accounts.authenticate(secret.strip())
