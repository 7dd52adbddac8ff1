"""Who is calling: the Airflow user, turned into an airgate Actor (name and lowercase roles).

Works for SimpleAuthManager users (one ``role``) and FAB users (a list of ``roles``). No user: Airflow's own
dependency answers 401 before any route code runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends

from airgate.governance.promotion import Actor


def actor_from_user(user: Any) -> Actor:
    roles: set[str] = set()
    role = getattr(user, "role", None)
    if role:
        roles.add(str(getattr(role, "name", role)).lower())
    for r in getattr(user, "roles", None) or []:
        roles.add(str(getattr(r, "name", r)).lower())
    return Actor(username=str(user.get_name()), roles=frozenset(roles))


async def current_actor(user: Annotated[Any, Depends(get_user)]) -> Actor:
    return actor_from_user(user)


CurrentActor = Annotated[Actor, Depends(current_actor)]
