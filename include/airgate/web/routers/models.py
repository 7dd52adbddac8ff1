"""Models: the champion by the promotion ledger, its history, and the approvers' rollback and break-glass revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from airgate.governance import promotion
from airgate.web.auth import CurrentActor
from airgate.web.deps import GovernedSpec, Warehouse, WritingActor, all_specs, governed_spec
from airgate.web.errors import errors
from airgate.web.schemas import RevokeIn, RevokeOut, RollbackIn, RollbackOut

router = APIRouter(prefix="/api/models", tags=["models"], responses=errors(401))


@router.get("")
def list_models(actor: CurrentActor, engine: Warehouse) -> list[dict[str, Any]]:
    return promotion.models_overview(engine, all_specs())


@router.get("/{model}", responses=errors(404))
def get_model(model: str, actor: CurrentActor, spec: GovernedSpec, engine: Warehouse) -> dict[str, Any]:
    """The promotion ledger (oldest first), every version that asked for approval, and what you may do."""
    from airgate.core.warehouse import utcnow

    return {
        "model": model,
        "owner": spec.owner,
        "champion": promotion.champion_as_of(engine, model, utcnow()),
        "ledger": promotion.ledger(engine, model),
        "versions": promotion.model_versions(engine, model),
        "you": {
            "can_rollback": promotion.is_approver(spec, actor),
            "can_revoke": promotion.may_break_glass(spec, actor),
        },
    }


@router.get("/{model}/ledger")
def model_ledger(model: str, actor: CurrentActor, engine: Warehouse) -> list[dict[str, Any]]:
    return promotion.ledger(engine, model)


@router.post("/{model}/rollback", response_model=RollbackOut, responses=errors(403, 404, 409))
def rollback(model: str, body: RollbackIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Make an earlier approved version champion again (approvers; justification required; audited)."""
    from airgate.core import registry
    from airgate.core.settings import mlflow_config

    cfg = mlflow_config()
    return promotion.rollback(
        engine,
        governed_spec(model),
        actor,
        body.to_version,
        body.justification,
        move_alias=lambda m, v: registry.set_alias(cfg, m, v),
    )


@router.post("/{model}/revoke", response_model=RevokeOut, responses=errors(403, 404, 409))
def revoke(model: str, body: RevokeIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Break-glass: withdraw the champion now; scoring stops until another version is approved or rolled
    back to (spec approval.break_glass only; justification required; audited)."""
    from airgate.core import registry
    from airgate.core.settings import mlflow_config

    cfg = mlflow_config()
    return promotion.revoke(
        engine,
        governed_spec(model),
        actor,
        body.version,
        body.justification,
        remove_alias=lambda m: registry.delete_alias(cfg, m),
    )
