"""Who the caller is, and which models they may approve or break glass on (the pages show or hide actions by it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from airgate.governance import promotion
from airgate.web.auth import CurrentActor
from airgate.web.deps import all_specs
from airgate.web.errors import errors
from airgate.web.schemas import MeOut

router = APIRouter(prefix="/api", tags=["auth"], responses=errors(401))


@router.get("/me", response_model=MeOut)
def me(actor: CurrentActor) -> Any:
    specs = all_specs()
    return {
        "username": actor.username,
        "roles": sorted(actor.roles),
        "approver_of": [s.name for s in specs if promotion.is_approver(s, actor)],
        "break_glass_of": [s.name for s in specs if promotion.may_break_glass(s, actor)],
    }
