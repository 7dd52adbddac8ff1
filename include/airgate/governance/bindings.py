"""What a request was bound to when it opened, and what those things are now: the facts a decision checks beyond
the request row.

A request row alone cannot be trusted: rewriting its bundle together with its hash made ``evidence == hash`` hold.
So a decision compares the request against the record written when it opened, the ``approval_requested`` audit
event (the keyed audit chain makes it the authoritative copy), and against the candidate row the gates wrote. The
same event names the report files' hashes, the champion the evidence was gated against and the role quorum; the
``approval_bindings`` row keeps a queryable copy. The training run's identity record adds who triggered and who
owns the run, for separation of duties.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from airgate.core import audit, run_identity, storage
from airgate.core.champion import last_ledger_entry
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import approval_bindings, approval_requests, audit_log, model_candidates
from airgate.governance import evidence as evidence_files


@dataclass(frozen=True)
class Facts:
    """Everything a decision rule reads besides the request row; JSON-shaped, so the page gets the same values
    (``get_request`` answers them under ``binding``) and ``may_decide`` agrees with ``decide``."""

    opened_hash: str | None = None  # the evidence hash in the approval_requested event (None: no such event)
    candidate_hash: str | None = None  # the candidate row's evidence hash (None: no candidate row)
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {path, sha256} at open
    artifacts_changed: list[str] = field(default_factory=list)  # names whose file no longer matches
    champion_bound: bool = False  # whether the champion at open was recorded (requests opened since 0015)
    gated_champion: str | None = None
    champion_now: str | None = None
    required_roles: dict[str, int] = field(default_factory=dict)
    superseded_by: str | None = None
    run_people: list[str] = field(default_factory=list)  # the run identity's triggered_by and owner

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Facts:
        return cls(**d) if d else cls()


def file_sha256(path: storage.Location) -> str | None:
    """The file's sha256, streamed (None when it is gone)."""
    h = hashlib.sha256()
    try:
        with storage.open_read(path) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def artifact_hashes(evidence: dict[str, Any], runs_dir: storage.Location) -> dict[str, dict[str, str]]:
    """The report files the evidence names, each with where it is and its sha256, as recorded at open."""
    out = {}
    for name, path in evidence_files.artifact_paths(evidence, runs_dir).items():
        digest = file_sha256(path)
        if digest is not None:
            out[name] = {"path": storage.as_string(path), "sha256": digest}
    return out


def changed_artifacts(artifacts: dict[str, dict[str, str]]) -> list[str]:
    """The recorded report files that are gone or no longer hash to what was recorded at open."""
    return sorted(n for n, a in artifacts.items() if file_sha256(a["path"]) != a["sha256"])


def champion_at_open(conn: Connection, model: str) -> tuple[str | None, int | None]:
    """The champion now (version, ledger id of the entry that made it), read from the promotion ledger."""
    r = last_ledger_entry(conn, model)
    if r is None or r.action == "revoke" or r.to_version is None:
        return None, r.id if r is not None else None
    return str(r.to_version), int(r.id)


def opening_event(conn: Connection, model: str, request_id: str) -> dict[str, Any] | None:
    """The request's ``approval_requested`` audit event (entity and details), or None."""
    row = conn.execute(
        select(audit_log.c.entity, audit_log.c.details)
        .where(
            audit_log.c.event_type == "approval_requested",
            audit_log.c.model == model,
            audit_log.c.entity["approval_request_id"].as_string() == request_id,
        )
        .order_by(audit_log.c.seq)
        .limit(1)
    ).first()
    return {"entity": row.entity, "details": row.details} if row is not None else None


def write_binding(
    conn: Connection, spec: ModelSpec, request_id: str, artifacts: dict[str, Any]
) -> dict[str, Any]:
    """Record what the request is bound to; returns the same values for its ``approval_requested`` event."""
    version, ledger_id = champion_at_open(conn, spec.name)
    roles = dict(spec.approval.required_roles)
    conn.execute(
        approval_bindings.insert().values(
            request_id=request_id,
            artifacts=artifacts,
            champion_version=version,
            champion_ledger_id=ledger_id,
            required_roles=roles,
        )
    )
    return {
        "artifacts": artifacts,
        "champion_version": version,
        "champion_ledger_id": ledger_id,
        "required_roles": roles,
    }


def _candidate_hash(conn: Connection, training_run_id: str) -> str | None:
    return conn.execute(
        select(model_candidates.c.evidence_hash).where(model_candidates.c.training_run_id == training_run_id)
    ).scalar()


def load_facts(conn: Connection, req: dict[str, Any]) -> Facts:
    """The facts for one request row (a mapping with id, model, training_run_id), inside the caller's transaction."""
    event = opening_event(conn, req["model"], req["id"])
    opened = (event or {}).get("details", {}).get("bound") or {}
    binding = conn.execute(
        select(approval_bindings).where(approval_bindings.c.request_id == req["id"])
    ).first()
    artifacts = opened.get("artifacts", {})
    ident = run_identity.load_identity(conn, req["training_run_id"])
    current, _ = champion_at_open(conn, req["model"])
    return Facts(
        opened_hash=(event or {}).get("entity", {}).get("evidence_hash"),
        candidate_hash=_candidate_hash(conn, req["training_run_id"]),
        artifacts=artifacts,
        artifacts_changed=changed_artifacts(artifacts),
        champion_bound="champion_version" in opened,
        gated_champion=opened.get("champion_version"),
        champion_now=current,
        required_roles=dict(opened.get("required_roles", {})),
        superseded_by=binding.superseded_by if binding is not None else None,
        run_people=sorted({p for p in (ident.triggered_by, ident.owner) if p} if ident else set()),
    )


def supersede_older(
    conn: Connection, model: str, request_id: str, version: str, actor: str, now: datetime
) -> None:
    """Mark every other live pending request of ``model`` superseded by ``request_id``, each audited: only the
    newest version's request stays decidable, so an older one cannot be approved past a newer candidate."""
    ar = approval_requests
    older = conn.execute(
        select(ar.c.id, ar.c.model_version).where(
            ar.c.model == model, ar.c.status == "pending", ar.c.id != request_id, ar.c.expires_at > now
        )
    ).all()
    for old_id, old_version in older:
        conn.execute(
            update(ar)
            .where(ar.c.id == old_id, ar.c.status == "pending")
            .values(status="superseded", decided_at=now)
        )
        conn.execute(
            update(approval_bindings)
            .where(approval_bindings.c.request_id == old_id)
            .values(superseded_by=request_id)
        )
        audit.append(
            conn,
            actor=actor,
            event_type="approval_superseded",
            model=model,
            entity={"approval_request_id": old_id, "model_version": str(old_version)},
            details={"superseded_by": request_id, "by_model_version": version},
        )


def missing_roles(required: dict[str, int], approver_roles: list[list[str]]) -> dict[str, int]:
    """Per required role, how many more distinct approvers holding it must approve (only roles still short)."""
    held = [{r.lower() for r in roles} for roles in approver_roles]
    short = {role: n - sum(role in h for h in held) for role, n in required.items()}
    return {role: n for role, n in sorted(short.items()) if n > 0}


def quorum_status(quorum: int, required: dict[str, int], approver_roles: list[list[str]]) -> dict[str, Any]:
    """What the request has and still lacks: the head count, and the approvers per role (``required_roles``)."""
    return {
        "approvals": len(approver_roles),
        "quorum": quorum,
        "required_roles": dict(required),
        "missing_approvals": max(0, quorum - len(approver_roles)),
        "missing_roles": missing_roles(required, approver_roles),
    }


def recorded_report(facts: Facts, name: str) -> bytes | None:
    """A report file as recorded when the request opened: its bytes, read once and checked against the recorded
    hash, so a swapped file is never served (409 ``evidence_changed`` naming it). None when the request recorded
    no such file; the caller serves unrecorded files only for requests opened before files were hashed."""
    from airgate.governance.requests import GovernanceError

    recorded = facts.artifacts.get(name)
    if recorded is None:
        return None
    try:
        data = storage.read_bytes(recorded["path"], what="a report file")
    except FileNotFoundError:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise GovernanceError(
            "evidence_changed", 409, f"report file {name} changed since the request opened; it is not served"
        )
    return data
