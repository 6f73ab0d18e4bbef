"""Helpers shared by the blueprints: the caller's principal, the service container, errors."""
from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app, request

from .auth import Principal, token_from_request, verify_token

if TYPE_CHECKING:
    from .services import Services


def services() -> "Services":
    return current_app.extensions["pulse"]


def current_principal() -> Principal:
    """The caller of this HTTP request, or raise Unauthorized (-> 401 ``{"detail": …}``)."""
    token = token_from_request(request.args, request.cookies, request.headers)
    return verify_token(services().settings.jwt_secret, token)
