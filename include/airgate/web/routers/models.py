"""Models: the champion by the promotion ledger, its history, the approvers' four-eyes rollback (propose, then
confirm by another eligible approver) and break-glass revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from airgate.governance import promotion
from airgate.web.auth import CurrentActor
from airgate.web.deps import GovernedSpec, Warehouse, WritingActor, all_specs, governed_spec
from airgate.web.errors import errors
from airgate.web.schemas import RevokeIn, RevokeOut, RollbackIn

router = APIRouter(prefix="/api/models", tags=["models"], responses=errors(401))


class RollbackConfirmIn(BaseModel):
    comment: str = Field("", max_length=4000)


class RollbackProposalOut(BaseModel):
    """A rollback proposal: ``pending`` until ``quorum`` eligible approvers confirmed it, then ``confirmed`` (the
    ledger row is ``ledger_id``). ``may_confirm`` names who may confirm, and who may not (``excluded``)."""

    proposal_id: str
    model: str
    status: str
    from_version: str | None
    to_version: str
    approval_id: str
    proposed_by: str
    justification: str
    quorum: int
    confirmations: int
    confirmed_by: list[str]
    may_confirm: dict[str, Any]
    expires_at: Any
    ledger_id: int | None


@router.get("")
def list_models(actor: CurrentActor, engine: Warehouse) -> list[dict[str, Any]]:
    return promotion.models_overview(engine, all_specs())


@router.get("/{model}", responses=errors(404))
def get_model(model: str, actor: CurrentActor, spec: GovernedSpec, engine: Warehouse) -> dict[str, Any]:
    """The promotion ledger (oldest first), every version that asked for approval, the open rollback proposals
    (each says whether you may confirm it, and why not), and what you may do."""
    from airgate.core.warehouse import utcnow

    proposals = promotion.rollback_proposals(engine, spec, actor)
    return {
        "model": model,
        "owner": spec.owner,
        "champion": promotion.champion_as_of(engine, model, utcnow()),
        "ledger": promotion.ledger(engine, model),
        "versions": promotion.model_versions(engine, model),
        "rollbacks": proposals,
        "you": {
            "can_rollback": promotion.is_approver(spec, actor),
            "can_revoke": promotion.may_break_glass(spec, actor),
            "can_confirm": [p["id"] for p in proposals if p["can_confirm"]],
        },
    }


@router.get("/{model}/ledger")
def model_ledger(model: str, actor: CurrentActor, engine: Warehouse) -> list[dict[str, Any]]:
    return promotion.ledger(engine, model)


@router.post("/{model}/rollback", response_model=RollbackProposalOut, responses=errors(403, 404, 409))
def rollback(model: str, body: RollbackIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Propose making an earlier approved version champion again (approvers; justification required; audited).
    Nothing changes until another eligible approver confirms: the answer is ``pending`` and says who may."""
    return promotion.propose_rollback(
        engine, governed_spec(model), actor, body.to_version, body.justification
    )


@router.post(
    "/{model}/rollbacks/{proposal_id}/confirm",
    response_model=RollbackProposalOut,
    responses=errors(403, 404, 409),
)
def confirm_rollback(
    model: str, proposal_id: str, body: RollbackConfirmIn, actor: WritingActor, engine: Warehouse
) -> Any:
    """Confirm a pending rollback proposal (an approver who is not its proposer, the owner, or a trainer of either
    version); the quorum-th confirmation moves the champion alias and writes the ledger. Audited either way."""
    from airgate.core import audit_anchor, registry
    from airgate.core.settings import mlflow_config

    cfg = mlflow_config()
    out = promotion.confirm_rollback(
        engine,
        governed_spec(model),
        proposal_id,
        actor,
        move_alias=lambda m, v: registry.set_alias(cfg, m, v),
        comment=body.comment,
    )
    audit_anchor.after_change(engine, cfg)  # committed: anchor the log's new head outside the warehouse
    return out


@router.post("/{model}/revoke", response_model=RevokeOut, responses=errors(403, 404, 409))
def revoke(model: str, body: RevokeIn, actor: WritingActor, engine: Warehouse) -> Any:
    """Break-glass: withdraw the champion now; scoring stops until another version is approved or rolled
    back to (spec approval.break_glass only; justification required; audited)."""
    from airgate.core import audit_anchor, registry
    from airgate.core.settings import mlflow_config

    cfg = mlflow_config()
    out = promotion.revoke(
        engine,
        governed_spec(model),
        actor,
        body.version,
        body.justification,
        remove_alias=lambda m: registry.delete_alias(cfg, m),
    )
    audit_anchor.after_change(engine, cfg)  # committed: anchor the log's new head outside the warehouse
    return out
