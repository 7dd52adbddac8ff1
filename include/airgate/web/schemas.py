"""The fixed-shape request and response bodies of the governance API.

Responses are typed only where the body has no timestamps: pydantic writes a UTC datetime as ``...Z`` where the
untyped routes write ``...+00:00``, and a refactor must not change what clients read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DecisionIn(BaseModel):
    decision: str = Field(pattern="^(approve|reject)$")
    comment: str = Field(min_length=1, max_length=4000)
    evidence_hash: str = Field(min_length=64, max_length=64)


class DecisionOut(BaseModel):
    request_id: str
    status: str
    model_version: str
    approvals: int
    quorum: int
    promoted_from: str | None
    missing_roles: dict[str, int] = Field(default_factory=dict)  # required role -> approvers still needed


class RollbackIn(BaseModel):
    to_version: str = Field(min_length=1, max_length=32)
    justification: str = Field(min_length=1, max_length=4000)


class RevokeIn(BaseModel):
    version: str = Field(min_length=1, max_length=32)
    justification: str = Field(min_length=1, max_length=4000)


class RevokeOut(BaseModel):
    model: str
    action: str
    from_version: str
    to_version: None
    ledger_id: int


class ReviewAnswer(BaseModel):
    event_id: str = Field(min_length=1, max_length=128)
    label: int = Field(ge=0, le=1)


class ReviewAnswersIn(BaseModel):
    answers: list[ReviewAnswer] = Field(min_length=1, max_length=5000)


class ReviewResult(BaseModel):
    accepted: int
    duplicates: int


class AuditPageOut(BaseModel):
    events: list[dict[str, Any]]
    next_before: int | None


class ChainCheckOut(BaseModel):
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    reason: str | None = None
    anchored_seq: int | None = None  # the newest anchor (storage or registry) the log was checked against


class MeOut(BaseModel):
    username: str
    roles: list[str]
    approver_of: list[str]
    break_glass_of: list[str]
