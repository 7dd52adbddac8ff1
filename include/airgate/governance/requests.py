"""Approval requests and who may take part: the error every refusal raises, the actor, the approver rules, opening
and listing requests, and the current champion (the promotion ledger's newest entry)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, storage
from airgate.core.spec import Approvers, ModelSpec
from airgate.core.warehouse import approval_decisions, approval_requests, as_utc, utcnow
from airgate.governance import bindings


class GovernanceError(Exception):
    """A refused action. ``status`` is the HTTP status the plugin answers with."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Actor:
    username: str
    roles: frozenset[str]


def _allowed(rules: Approvers, actor: Actor) -> bool:
    return actor.username in rules.users or bool(actor.roles & {r.lower() for r in rules.roles})


def is_approver(spec: ModelSpec, actor: Actor) -> bool:
    return _allowed(spec.approval.approvers, actor)


def may_break_glass(spec: ModelSpec, actor: Actor) -> bool:
    return _allowed(spec.approval.break_glass, actor)


def with_extra_approvers(spec: ModelSpec, users: list[str], roles: list[str]) -> ModelSpec:
    """The spec with approvers granted outside it (Airflow config) added: one place decides who may approve."""
    if not users and not roles:
        return spec
    rules = spec.approval.approvers
    merged = rules.model_copy(
        update={
            "users": sorted(set(rules.users) | set(users)),
            "roles": sorted(set(rules.roles) | {r.lower() for r in roles}),
        }
    )
    return spec.model_copy(update={"approval": spec.approval.model_copy(update={"approvers": merged})})


def _ledger_lock(model: str) -> str:
    return f"airgate.ledger.{model}"


def open_request(
    engine: Engine,
    spec: ModelSpec,
    model_version: str,
    training_run_id: str,
    evidence: dict[str, Any],
    evidence_hash: str,
    requested_by: str,
    runs_dir: storage.Location | None = None,
) -> str:
    """Open (or return the already open) approval request for one model version.

    The request is bound to the report files' hashes, the champion now and the spec's role quorum, written with it
    and into its ``approval_requested`` event; older pending requests of the model are superseded by it."""
    now = utcnow()
    rid = f"apr-{uuid.uuid4().hex[:12]}"
    artifacts = bindings.artifact_hashes(evidence, runs_dir if runs_dir is not None else storage.runs())
    expires = now + timedelta(hours=spec.approval.expires_after_hours)
    try:
        with engine.begin() as conn:
            conn.execute(
                approval_requests.insert().values(
                    id=rid,
                    model=spec.name,
                    model_version=str(model_version),
                    training_run_id=training_run_id,
                    evidence_hash=evidence_hash,
                    evidence=evidence,
                    requested_by=requested_by,
                    owner=spec.owner,
                    quorum=spec.approval.quorum,
                    status="pending",
                    created_at=now,
                    expires_at=expires,
                )
            )
            bound = bindings.write_binding(conn, spec, rid, artifacts)
            bindings.supersede_older(conn, spec.name, rid, str(model_version), requested_by, now)
            audit.append(
                conn,
                actor=requested_by,
                event_type="approval_requested",
                model=spec.name,
                entity={
                    "approval_request_id": rid,
                    "model_version": str(model_version),
                    "training_run_id": training_run_id,
                    "evidence_hash": evidence_hash,
                },
                details={"quorum": spec.approval.quorum, "expires_at": expires.isoformat(), "bound": bound},
            )
        return rid
    except IntegrityError:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    select(approval_requests.c.id).where(
                        approval_requests.c.model == spec.name,
                        approval_requests.c.model_version == str(model_version),
                    )
                ).scalar_one()
            )


def _status_filter(q: Any, status: str, now: datetime) -> Any:
    """A lapsed pending request is listed as expired, never as pending (its stored status changes only when a
    decision attempt notices it)."""
    c = approval_requests.c
    if status == "pending":
        return q.where(c.status == "pending", c.expires_at > now)
    if status == "expired":
        return q.where(or_(c.status == "expired", and_(c.status == "pending", c.expires_at <= now)))
    return q.where(c.status == status)


def list_requests(
    engine: Engine, model: str | None = None, status: str | None = None, limit: int = 200, offset: int = 0
) -> list[dict[str, Any]]:
    q = select(
        approval_requests.c.id,
        approval_requests.c.model,
        approval_requests.c.model_version,
        approval_requests.c.training_run_id,
        approval_requests.c.evidence_hash,
        approval_requests.c.requested_by,
        approval_requests.c.quorum,
        approval_requests.c.status,
        approval_requests.c.created_at,
        approval_requests.c.expires_at,
        approval_requests.c.decided_at,
        approval_requests.c.evidence,
    )
    if model:
        q = q.where(approval_requests.c.model == model)
    now = utcnow()
    if status:
        q = _status_filter(q, status, now)
    q = q.order_by(approval_requests.c.created_at.desc(), approval_requests.c.id).limit(limit).offset(offset)
    out = []
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        ids = [r["id"] for r in rows]
        approvals: dict[str, int] = (
            dict(
                conn.execute(
                    select(approval_decisions.c.request_id, func.count())
                    .where(
                        approval_decisions.c.request_id.in_(ids), approval_decisions.c.decision == "approve"
                    )
                    .group_by(approval_decisions.c.request_id)
                ).all()
            )
            if ids
            else {}
        )
        for r in rows:
            d = dict(r)
            ev = d.pop("evidence") or {}
            d["gates"] = {g["name"]: g["state"] for g in ev.get("gates", [])}
            d["metrics"] = ev.get("metrics", {}).get(ev.get("candidate", ""), {})
            d["status"] = _shown_status(d["status"], d["expires_at"], now)
            d["approvals"] = int(approvals.get(d["id"], 0))
            out.append(d)
    return out


def _shown_status(status: str, expires_at: datetime | None, now: datetime) -> str:
    """A pending request past its expiry is expired, whether or not anyone has tried to decide it since."""
    exp = as_utc(expires_at)
    return "expired" if status == "pending" and exp is not None and exp <= now else status


def get_request(engine: Engine, request_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        r = conn.execute(select(approval_requests).where(approval_requests.c.id == request_id)).first()
        if r is None:
            raise GovernanceError("not_found", 404, f"approval request {request_id} does not exist")
        d = dict(r._mapping)
        d["status"] = _shown_status(d["status"], d["expires_at"], utcnow())
        d["decisions"] = [
            dict(x)
            for x in conn.execute(
                select(approval_decisions)
                .where(approval_decisions.c.request_id == request_id)
                .order_by(approval_decisions.c.id)
            ).mappings()
        ]
        facts = bindings.load_facts(conn, d)
    d["binding"] = facts.as_json()
    d["quorum_status"] = bindings.quorum_status(
        d["quorum"],
        facts.required_roles,
        [x["roles"] or [] for x in d["decisions"] if x["decision"] == "approve"],
    )
    return d
