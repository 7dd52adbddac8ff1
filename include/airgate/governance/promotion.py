"""Approval requests, the rules that decide them, and the promotion ledger.

Every rule is enforced here, on the server side, and tested without a server: the plugin only translates HTTP into
these calls. No approval without an authenticated approver who is not the trainer or owner, an unexpired pending
request, the quorum, and unchanged evidence. An approval that reaches quorum writes the ledger entry and moves the
MLflow ``champion`` alias in one step: if the alias cannot move, the decision rolls back. Every attempt is audited,
refused ones included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit
from airgate.core.hashing import canonical_sha256
from airgate.core.spec import Approvers, ModelSpec
from airgate.core.warehouse import (
    approval_decisions,
    approval_requests,
    as_utc,
    lock_for_chain,
    promotion_ledger,
    utcnow,
)


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


@dataclass(frozen=True)
class Champion:
    version: str
    approval_id: str | None
    action: str


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
    merged = rules.model_copy(update={"users": sorted(set(rules.users) | set(users)),
                                      "roles": sorted(set(rules.roles) | {r.lower() for r in roles})})
    return spec.model_copy(update={"approval": spec.approval.model_copy(update={"approvers": merged})})


def _ledger_lock(model: str) -> str:
    return f"airgate.ledger.{model}"


def open_request(engine: Engine, spec: ModelSpec, model_version: str, training_run_id: str,
                 evidence: dict[str, Any], evidence_hash: str, requested_by: str) -> str:
    """Open (or return the already open) approval request for one model version."""
    now = utcnow()
    rid = f"apr-{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(approval_requests.insert().values(
                id=rid, model=spec.name, model_version=str(model_version), training_run_id=training_run_id,
                evidence_hash=evidence_hash, evidence=evidence, requested_by=requested_by, owner=spec.owner,
                quorum=spec.approval.quorum, status="pending", created_at=now,
                expires_at=now + timedelta(hours=spec.approval.expires_after_hours)))
            audit.append(conn, actor=requested_by, event_type="approval_requested", model=spec.name,
                         entity={"approval_request_id": rid, "model_version": str(model_version),
                                 "training_run_id": training_run_id, "evidence_hash": evidence_hash},
                         details={"quorum": spec.approval.quorum, "expires_at": (now + timedelta(
                             hours=spec.approval.expires_after_hours)).isoformat()})
        return rid
    except IntegrityError:
        with engine.connect() as conn:
            return str(conn.execute(select(approval_requests.c.id).where(
                approval_requests.c.model == spec.name,
                approval_requests.c.model_version == str(model_version))).scalar_one())


def list_requests(engine: Engine, model: str | None = None, status: str | None = None,
                  limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    q = select(approval_requests.c.id, approval_requests.c.model, approval_requests.c.model_version,
               approval_requests.c.training_run_id, approval_requests.c.evidence_hash,
               approval_requests.c.requested_by, approval_requests.c.quorum, approval_requests.c.status,
               approval_requests.c.created_at, approval_requests.c.expires_at, approval_requests.c.decided_at,
               approval_requests.c.evidence)
    if model:
        q = q.where(approval_requests.c.model == model)
    if status:
        q = q.where(approval_requests.c.status == status)
    q = q.order_by(approval_requests.c.created_at.desc(), approval_requests.c.id).limit(limit).offset(offset)
    now = utcnow()
    out = []
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
        ids = [r["id"] for r in rows]
        approvals: dict[str, int] = dict(conn.execute(
            select(approval_decisions.c.request_id, func.count()).where(
                approval_decisions.c.request_id.in_(ids), approval_decisions.c.decision == "approve")
            .group_by(approval_decisions.c.request_id)).all()) if ids else {}
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
        d["decisions"] = [dict(x) for x in conn.execute(
            select(approval_decisions).where(approval_decisions.c.request_id == request_id)
            .order_by(approval_decisions.c.id)).mappings()]
    return d


def current_champion(engine: Engine | Connection, model: str) -> Champion | None:
    """The approved champion according to the promotion ledger (the source of truth, not the MLflow alias)."""
    r = _last_ledger_entry(engine, model)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None
    return Champion(str(r.to_version), r.approval_id, r.action)


def _last_ledger_entry(engine: Engine | Connection, model: str, at: datetime | None = None) -> Any:
    """The newest ledger row of ``model`` (written by ``at``, when given), inside the caller's transaction if any."""
    q = select(promotion_ledger).where(promotion_ledger.c.model == model)
    if at is not None:
        q = q.where(promotion_ledger.c.at <= at)
    q = q.order_by(promotion_ledger.c.id.desc()).limit(1)
    if isinstance(engine, Connection):
        return engine.execute(q).first()
    with engine.connect() as conn:
        return conn.execute(q).first()


def _refuse(engine: Engine, actor: Actor, model: str | None, request_id: str, decision: str,
            err: GovernanceError) -> GovernanceError:
    audit.record(engine, actor=actor.username, event_type="decision_refused", model=model,
                 entity={"approval_request_id": request_id},
                 details={"decision": decision, "code": err.code, "reason": err.message})
    return err


def _mark_expired(engine: Engine, model: str, request_id: str, now: datetime) -> None:
    """Persist the expiry found by a decision attempt (that attempt's own transaction was rolled back)."""
    with engine.begin() as conn:
        done = conn.execute(update(approval_requests).where(approval_requests.c.id == request_id,
                                                            approval_requests.c.status == "pending")
                            .values(status="expired", decided_at=now)).rowcount
        if done:
            audit.append(conn, actor="airgate", event_type="approval_expired", model=model,
                         entity={"approval_request_id": request_id}, details={"noticed_at": now.isoformat()})


AliasMover = Callable[[str, str], None]  # (model, version) -> None; raises if the alias could not move


def decide(engine: Engine, spec: ModelSpec, request_id: str, actor: Actor, decision: str, comment: str,
           evidence_hash: str, move_alias: AliasMover, restore_alias: AliasMover | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """Record one approver's decision. Returns the request's resulting state. Raises GovernanceError if refused."""
    now = now or utcnow()
    model = spec.name
    try:
        if decision not in ("approve", "reject"):
            raise GovernanceError("bad_decision", 422, "decision must be 'approve' or 'reject'")
        if not comment or not comment.strip():
            raise GovernanceError("comment_required", 422, "a comment is required with every decision")
        if not is_approver(spec, actor):
            raise GovernanceError("not_approver", 403,
                                  f"user '{actor.username}' is not an approver for model '{model}'")
        with engine.begin() as conn:
            lock_for_chain(conn, f"airgate.approval.{request_id}")
            q = select(approval_requests).where(approval_requests.c.id == request_id)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            req = conn.execute(q).first()
            if req is None or req.model != model:
                raise GovernanceError("not_found", 404, f"approval request {request_id} does not exist for {model}")
            if actor.username in {req.requested_by, req.owner}:
                raise GovernanceError("separation_of_duties", 403,
                                      f"user '{actor.username}' trained or owns this model version and cannot "
                                      "approve or reject it")
            if req.status != "pending":
                raise GovernanceError("not_pending", 409, f"request {request_id} is already {req.status}")
            expires = as_utc(req.expires_at)
            if expires is not None and expires <= now:
                raise GovernanceError("expired", 409, f"request {request_id} expired at {expires.isoformat()}")
            if evidence_hash != req.evidence_hash or canonical_sha256(req.evidence) != req.evidence_hash:
                raise GovernanceError("evidence_changed", 409,
                                      "the evidence changed since you loaded it; reload the request and review again")
            already = conn.execute(select(approval_decisions.c.id).where(
                approval_decisions.c.request_id == request_id, approval_decisions.c.actor == actor.username)).first()
            if already is not None:
                raise GovernanceError("already_decided", 409, f"user '{actor.username}' already decided this request")
            conn.execute(approval_decisions.insert().values(
                request_id=request_id, actor=actor.username, decision=decision, comment=comment.strip(),
                evidence_hash=evidence_hash, decided_at=now))
            audit.append(conn, actor=actor.username, event_type="decision", model=model,
                         entity={"approval_request_id": request_id, "model_version": req.model_version},
                         details={"decision": decision, "comment": comment.strip(), "evidence_hash": evidence_hash})
            approvals = conn.execute(select(approval_decisions.c.actor).where(
                approval_decisions.c.request_id == request_id, approval_decisions.c.decision == "approve")).all()
            status = "pending"
            if decision == "reject":
                status = "rejected"
            elif len(approvals) >= req.quorum:
                status = "approved"
            promoted_from: str | None = None
            if status != "pending":
                conn.execute(update(approval_requests).where(approval_requests.c.id == request_id)
                             .values(status=status, decided_at=now))
            if status == "approved":
                lock_for_chain(conn, _ledger_lock(model))
                prev = current_champion(conn, model)
                promoted_from = prev.version if prev else None
                conn.execute(promotion_ledger.insert().values(
                    model=model, action="promote", from_version=promoted_from, to_version=req.model_version,
                    approval_id=request_id, actor=actor.username, reason=comment.strip(), at=now))
                audit.append(conn, actor=actor.username, event_type="promotion", model=model,
                             entity={"approval_request_id": request_id, "model_version": req.model_version},
                             details={"from_version": promoted_from, "to_version": req.model_version,
                                      "alias": "champion", "approvers": sorted(a.actor for a in approvals)})
                move_alias(model, str(req.model_version))  # inside the transaction: if it raises, nothing commits
            result = {"request_id": request_id, "status": status, "model_version": str(req.model_version),
                      "approvals": len(approvals), "quorum": req.quorum, "promoted_from": promoted_from}
    except GovernanceError as err:
        if err.code == "expired":
            _mark_expired(engine, model, request_id, now)
        raise _refuse(engine, actor, model, request_id, decision, err) from None
    except Exception:
        if restore_alias is not None:
            prev_champ = current_champion(engine, model)
            if prev_champ is not None:
                restore_alias(model, prev_champ.version)
        raise
    return result


def approved_version(engine: Engine | Connection, model: str, version: str) -> str | None:
    """The approval id under which ``version`` is the ledger's current champion, or None."""
    champ = current_champion(engine, model)
    if champ is not None and champ.version == str(version):
        return champ.approval_id
    return None


def ledger(engine: Engine, model: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(promotion_ledger).where(promotion_ledger.c.model == model)
                                              .order_by(promotion_ledger.c.id)).mappings()]


def why_not_decide(spec: ModelSpec, request: dict[str, Any], actor: Actor, now: datetime | None = None) -> str | None:
    """Why ``actor`` may not decide ``request`` now, or None. The page hides the buttons with it; ``decide`` still
    checks every rule itself, so this is a courtesy, never the guard."""
    now = now or utcnow()
    if not is_approver(spec, actor):
        return f"'{actor.username}' is not an approver for {spec.name}"
    if actor.username in {request["requested_by"], request["owner"]}:
        return f"'{actor.username}' trained or owns this model version (separation of duties)"
    if request["status"] != "pending":
        return f"the request is {request['status']}"
    expires = as_utc(request["expires_at"])
    if expires is not None and expires <= now:
        return f"the request expired at {expires.isoformat()}"
    if any(d["actor"] == actor.username for d in request.get("decisions", [])):
        return f"'{actor.username}' already decided this request"
    return None


MIN_JUSTIFICATION = 10


def _justified(text: str, what: str) -> str:
    text = (text or "").strip()
    if len(text) < MIN_JUSTIFICATION:
        raise GovernanceError("justification_required", 422,
                              f"a {what} needs a justification of at least {MIN_JUSTIFICATION} characters")
    return text


def _revoked_versions(conn: Connection, model: str) -> set[str]:
    return {str(v) for v in conn.execute(select(promotion_ledger.c.from_version).where(
        promotion_ledger.c.model == model, promotion_ledger.c.action == "revoke")).scalars()}


def _ledger_entry(conn: Connection, model: str, action: str, from_version: str | None, to_version: str | None,
                  approval_id: str | None, actor: Actor, reason: str, now: datetime) -> int:
    res = conn.execute(promotion_ledger.insert().values(
        model=model, action=action, from_version=from_version, to_version=to_version, approval_id=approval_id,
        actor=actor.username, reason=reason, at=now))
    key = res.inserted_primary_key
    assert key is not None
    return int(key[0])


def rollback(engine: Engine, spec: ModelSpec, actor: Actor, to_version: str, justification: str,
             move_alias: AliasMover, now: datetime | None = None) -> dict[str, Any]:
    """Make an earlier approved (and never revoked) version the champion again. Approvers only; audited either way.

    The rolled-back-to version keeps its original approval id, so scoring and lineage show which approval it runs
    under, and the ledger row shows that it got there by a rollback.
    """
    now = now or utcnow()
    model = spec.name
    to_version = str(to_version)
    try:
        if not is_approver(spec, actor):
            raise GovernanceError("not_approver", 403, f"user '{actor.username}' may not roll back {model}")
        reason = _justified(justification, "rollback")
        with engine.begin() as conn:
            lock_for_chain(conn, _ledger_lock(model))
            req = conn.execute(select(approval_requests.c.id).where(
                approval_requests.c.model == model, approval_requests.c.model_version == to_version,
                approval_requests.c.status == "approved")).first()
            if req is None:
                raise GovernanceError("not_approved", 409,
                                      f"{model} v{to_version} was never approved: only an approved version can "
                                      "become champion")
            if to_version in _revoked_versions(conn, model):
                raise GovernanceError("revoked", 409, f"{model} v{to_version} was revoked and cannot return")
            champ = current_champion(conn, model)
            if champ is not None and champ.version == to_version:
                raise GovernanceError("already_champion", 409, f"{model} v{to_version} is already the champion")
            from_version = champ.version if champ else None
            ledger_id = _ledger_entry(conn, model, "rollback", from_version, to_version, req.id, actor, reason, now)
            audit.append(conn, actor=actor.username, event_type="rollback", model=model,
                         entity={"model_version": to_version, "approval_request_id": req.id, "ledger_id": ledger_id},
                         details={"from_version": from_version, "to_version": to_version, "alias": "champion",
                                  "justification": reason})
            move_alias(model, to_version)  # last, inside the transaction: if it raises, nothing commits
    except GovernanceError as err:
        audit.record(engine, actor=actor.username, event_type="rollback_refused", model=model,
                     entity={"model_version": to_version}, details={"code": err.code, "reason": err.message})
        raise
    return {"model": model, "action": "rollback", "from_version": from_version, "to_version": to_version,
            "approval_id": req.id, "ledger_id": ledger_id}


AliasRemover = Callable[[str], None]


def revoke(engine: Engine, spec: ModelSpec, actor: Actor, version: str, justification: str,
           remove_alias: AliasRemover, now: datetime | None = None) -> dict[str, Any]:
    """Break-glass: withdraw the champion's approval now. Scoring refuses until a version is approved or rolled
    back to, and the revoked version can never return. Only the spec's break-glass users/roles; audited either way.
    """
    now = now or utcnow()
    model = spec.name
    version = str(version)
    try:
        if not may_break_glass(spec, actor):
            raise GovernanceError("not_break_glass", 403,
                                  f"user '{actor.username}' may not revoke {model} (break-glass is limited to "
                                  "approval.break_glass in the spec)")
        reason = _justified(justification, "revocation")
        with engine.begin() as conn:
            lock_for_chain(conn, _ledger_lock(model))
            champ = current_champion(conn, model)
            if champ is None or champ.version != version:
                raise GovernanceError("not_champion", 409,
                                      f"{model} v{version} is not the champion "
                                      f"(champion: {('v' + champ.version) if champ else 'none'})")
            ledger_id = _ledger_entry(conn, model, "revoke", version, None, champ.approval_id, actor, reason, now)
            if champ.approval_id:
                conn.execute(update(approval_requests).where(approval_requests.c.id == champ.approval_id)
                             .values(status="revoked"))
            audit.append(conn, actor=actor.username, event_type="revocation", model=model,
                         entity={"model_version": version, "approval_request_id": champ.approval_id,
                                 "ledger_id": ledger_id},
                         details={"justification": reason, "break_glass": True, "alias": "champion"})
            remove_alias(model)
    except GovernanceError as err:
        audit.record(engine, actor=actor.username, event_type="revocation_refused", model=model,
                     entity={"model_version": version}, details={"code": err.code, "reason": err.message})
        raise
    return {"model": model, "action": "revoke", "from_version": version, "to_version": None, "ledger_id": ledger_id}


def champion_as_of(engine: Engine | Connection, model: str, at: datetime) -> dict[str, Any] | None:
    """The ledger's champion at time ``at`` (None before the first promotion or after a revocation)."""
    r = _last_ledger_entry(engine, model, at)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None
    return {"version": str(r.to_version), "approval_id": r.approval_id, "action": r.action, "ledger_id": r.id,
            "since": as_utc(r.at)}


def model_versions(engine: Engine, model: str) -> list[dict[str, Any]]:
    """Every version that asked for approval, newest first, with what the ledger says about it."""
    with engine.connect() as conn:
        reqs = conn.execute(select(approval_requests.c.id, approval_requests.c.model_version,
                                   approval_requests.c.training_run_id, approval_requests.c.status,
                                   approval_requests.c.created_at, approval_requests.c.decided_at,
                                   approval_requests.c.expires_at)
                            .where(approval_requests.c.model == model)
                            .order_by(approval_requests.c.created_at.desc())).mappings().all()
        revoked = _revoked_versions(conn, model)
        champ = current_champion(conn, model)
    now = utcnow()
    out = []
    for r in reqs:
        status = _shown_status(r["status"], r["expires_at"], now)
        version = str(r["model_version"])
        is_champ = champ is not None and champ.version == version
        out.append({"version": version, "training_run_id": r["training_run_id"], "status": status,
                    "approval_id": r["id"], "requested_at": r["created_at"],
                    "approved_at": r["decided_at"] if status in ("approved", "revoked") else None,
                    "revoked": version in revoked, "champion": is_champ,
                    "can_roll_back_to": status == "approved" and version not in revoked and not is_champ})
    return out


def models_overview(engine: Engine, specs: list[ModelSpec]) -> list[dict[str, Any]]:
    """One row per model: its champion by the ledger, and how many versions wait for a decision."""
    out = []
    for spec in specs:
        versions = model_versions(engine, spec.name)
        champ = champion_as_of(engine, spec.name, utcnow())
        out.append({"model": spec.name, "owner": spec.owner, "champion": champ,
                    "pending": sum(v["status"] == "pending" for v in versions), "versions": len(versions)})
    return out
