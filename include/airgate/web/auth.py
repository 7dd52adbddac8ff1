"""Who is calling: the Airflow user, turned into an airgate Actor (name and lowercase roles).

Works for SimpleAuthManager users (one ``role``) and FAB users (a list of ``roles``). No user: Airflow's own
dependency answers 401 before any route code runs. The actor is also kept on the request's state, so that a refusal
raised after authentication (a 422, a CSRF 403) can be audited under the caller's name.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, Request
from fastapi.security.utils import get_authorization_scheme_param

from airgate.governance.promotion import Actor

log = logging.getLogger(__name__)
STATE_KEY = "airgate_actor"


def actor_from_user(user: Any) -> Actor:
    roles: set[str] = set()
    role = getattr(user, "role", None)
    if role:
        roles.add(str(getattr(role, "name", role)).lower())
    for r in getattr(user, "roles", None) or []:
        roles.add(str(getattr(r, "name", r)).lower())
    return Actor(username=str(user.get_name()), roles=frozenset(roles))


async def current_actor(request: Request, user: Annotated[Any, Depends(get_user)]) -> Actor:
    actor = actor_from_user(user)
    setattr(request.state, STATE_KEY, actor)
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def bearer_token(request: Request) -> str | None:
    """The credential of ``Authorization: Bearer <token>``, exactly as Airflow's ``get_user`` reads it (its
    ``HTTPBearer``): any other scheme, or an empty token, is no credential, and then the cookie authenticates."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return credentials if scheme.lower() == "bearer" and credentials else None


async def actor_of(request: Request) -> Actor | None:
    """Best effort, for auditing a refusal: the actor the route already authenticated, else whoever the request's
    own credential (Bearer token, then the cookie, as ``get_user``) names; None for an anonymous or invalid one."""
    known = getattr(request.state, STATE_KEY, None)
    if isinstance(known, Actor):
        return known
    token = bearer_token(request) or request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return None
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return actor_from_user(await get_auth_manager().get_user_from_token(token))
    except Exception:  # noqa: BLE001 - an expired or forged token is simply no one
        log.debug("refusal by an unauthenticated caller", exc_info=True)
        return None
