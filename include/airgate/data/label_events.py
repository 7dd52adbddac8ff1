"""Label events: every label that arrives (ground truth, late grades, people's review answers, auto-labels) as an
append-only event with its source, and the open review queue. ``labeling`` turns these events into labeled
versions."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from airgate.core import audit, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert, clean_events, label_events, review_queue, utcnow

TRUST = {"ground_truth": 4, "late": 3, "human": 2, "auto": 1}
TRUSTED_SOURCES = ("ground_truth", "late", "human")  # evaluation never scores a model on model-made labels


@dataclass(frozen=True)
class Predictor:
    """The approved champion as a labeler: its version and ``predictors.Predictor.predict`` (history, rows)."""

    model_version: str
    predict: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


@dataclass
class LabelResult:
    model: str
    labeled_version_id: str | None
    created: bool
    rows: int
    new_labels: int
    by_source: dict[str, int]
    clean_versions: list[str]
    relabeled: int = 0
    queued: int = 0
    auto_share: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelFileOutcome:
    path: str
    accepted: int
    duplicates: int
    rejected: int
    error: str | None = None


# ----------------------------------------------------------------------------------------- label events


def record_label_events(
    engine: Engine, spec: ModelSpec, rows: list[dict[str, Any]], source: str, origin: str, actor: str
) -> tuple[int, int]:
    """Append late or human labels; returns (accepted, duplicates). Unknown event ids are refused by the caller."""
    if source not in ("late", "human"):
        raise ValueError(f"label events are late or human, not {source!r}")
    accepted = duplicates = 0
    now = utcnow()
    with engine.begin() as conn:
        known = set(
            conn.execute(
                select(label_events.c.event_id).where(
                    label_events.c.model == spec.name,
                    label_events.c.source == source,
                    label_events.c.event_id.in_([r["event_id"] for r in rows]),
                )
            ).scalars()
        )
        fresh = []
        for r in rows:
            if r["event_id"] in known:
                duplicates += 1
                continue
            known.add(r["event_id"])
            fresh.append(
                {
                    "model": spec.name,
                    "event_id": r["event_id"],
                    "label": int(r["label"]),
                    "source": source,
                    "labeler": r.get("labeler") or ("grader" if source == "late" else "reviewer"),
                    "person": r.get("person"),
                    "origin": origin,
                    "observed_at": now,
                }
            )
        bulk_insert(conn, label_events, fresh)
        accepted = len(fresh)
        if source == "human" and fresh:
            conn.execute(
                update(review_queue)
                .where(
                    review_queue.c.model == spec.name,
                    review_queue.c.event_id.in_([f["event_id"] for f in fresh]),
                )
                .values(status="answered", answered_at=now)
            )
        audit.append(
            conn,
            actor=actor,
            event_type="label_events",
            model=spec.name,
            entity={"origin": origin, "source": source},
            details={"accepted": accepted, "duplicates": duplicates},
        )
    return accepted, duplicates


def _parse_label_file(data: bytes) -> list[dict[str, Any]]:
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    cols = reader.fieldnames or []
    label_col = "label" if "label" in cols else "correct" if "correct" in cols else None
    if "event_id" not in cols or label_col is None:
        raise ValueError(f"a label file needs columns event_id and label (or correct); found {cols}")
    out = []
    for r in reader:
        value = (r.get(label_col) or "").strip()
        if value not in ("0", "1"):
            raise ValueError(f"label must be 0 or 1, got {value!r} for event {r.get('event_id')!r}")
        out.append(
            {
                "event_id": (r.get("event_id") or "").strip(),
                "label": int(value),
                "labeler": (r.get("labeler") or "").strip() or None,
                "person": (r.get("reviewer") or r.get("person") or "").strip() or None,
            }
        )
    return out


def ingest_label_files(
    engine: Engine, spec: ModelSpec, folder: storage.Location, source: str, actor: str = "airflow"
) -> list[LabelFileOutcome]:
    """Every CSV in the folder (event_id, label[, reviewer]); a bad file is rejected whole, with its reason.

    A folder nobody has dropped a file into yet has nothing to read (on an object store a folder exists only once
    a file is in it)."""
    outcomes: list[LabelFileOutcome] = []
    folder = storage.location(folder)
    if not folder.is_dir():
        return outcomes
    with engine.connect() as conn:
        done = set(
            conn.execute(
                select(label_events.c.origin).where(label_events.c.model == spec.name).distinct()
            ).scalars()
        )
    for path in sorted(folder.glob("*.csv"), key=str):
        origin = storage.as_string(path)
        if path.name.startswith(".") or origin in done:
            continue
        try:
            rows = _parse_label_file(storage.read_bytes(path, what=f"a {source} label file"))
        except (ValueError, UnicodeDecodeError) as exc:
            audit.record(
                engine,
                actor=actor,
                event_type="label_file_rejected",
                model=spec.name,
                entity={"path": origin},
                details={"error": str(exc)},
            )
            outcomes.append(LabelFileOutcome(origin, 0, 0, 1, str(exc)))
            continue
        # Labels for events that are not clean events (quarantined, or never seen) cannot join: count them.
        unknown = _unknown_events(engine, spec, [r["event_id"] for r in rows])
        error = None
        if unknown:
            error = f"{len(unknown)} event ids are not in any clean version, e.g. {sorted(unknown)[:3]}"
            audit.record(
                engine,
                actor=actor,
                event_type="label_rows_rejected",
                model=spec.name,
                entity={"path": origin},
                details={"rows": len(unknown), "error": error},
            )
        known = [r for r in rows if r["event_id"] not in unknown]
        accepted, dups = record_label_events(engine, spec, known, source, origin, actor) if known else (0, 0)
        outcomes.append(LabelFileOutcome(origin, accepted, dups, len(unknown), error))
    return outcomes


def _unknown_events(engine: Engine, spec: ModelSpec, event_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        found = set(
            conn.execute(
                select(clean_events.c.event_id).where(
                    clean_events.c.model == spec.name, clean_events.c.event_id.in_(event_ids)
                )
            ).scalars()
        )
    return set(event_ids) - found


class ReviewRefused(ValueError):
    """An answer the review queue does not take: ``code`` names the rule, ``status`` the HTTP answer."""

    def __init__(self, code: str, status: int, message: str, event_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.event_ids = event_ids or []


def _queue_status(engine: Engine, spec: ModelSpec, event_ids: list[str]) -> dict[str, str]:
    with engine.connect() as conn:
        q = select(review_queue.c.event_id, review_queue.c.status).where(
            review_queue.c.model == spec.name, review_queue.c.event_id.in_(event_ids)
        )
        return {r.event_id: r.status for r in conn.execute(q)}


def _refuse(engine: Engine, spec: ModelSpec, person: str, err: ReviewRefused) -> ReviewRefused:
    """Audit a refused set of answers (``review_refused``) and hand the refusal back to raise."""
    audit.record(
        engine,
        actor=person,
        event_type="review_refused",
        model=spec.name,
        entity={"event_ids": err.event_ids[:50]},
        details={"code": err.code, "reason": str(err), "events": len(err.event_ids)},
    )
    return err


def _check_reviewer(engine: Engine, spec: ModelSpec, person: str, event_ids: list[str]) -> None:
    """Nobody labels for a model they answer for: the spec's owner and every trainer of one of its runs (from
    the runs' identity records) are refused, since their labels would judge their own models."""
    from airgate.core.run_identity import trainers_of

    with engine.connect() as conn:
        trainers = trainers_of(conn, spec.name)
    if person == spec.owner or person in trainers:
        role = "owner" if person == spec.owner else "trainer of one of its training runs"
        raise _refuse(
            engine,
            spec,
            person,
            ReviewRefused(
                "separation_of_duties",
                403,
                f"{person} is the {role} of {spec.name} and may not label its review queue (separation of duties)",
                event_ids,
            ),
        )


def _check_queued(engine: Engine, spec: ModelSpec, person: str, event_ids: list[str]) -> None:
    """Only events the queue asked people about are answered: an open one is labeled, an answered one is a
    duplicate (nothing new is written), anything else is refused and named."""
    status = _queue_status(engine, spec, event_ids)
    never = sorted({e for e in event_ids if e not in status})
    if never:
        raise _refuse(
            engine,
            spec,
            person,
            ReviewRefused(
                "not_queued",
                409,
                f"events not in the review queue of {spec.name}: {never[:10]}"
                + (f" and {len(never) - 10} more" if len(never) > 10 else ""),
                never,
            ),
        )


def answer_reviews(
    engine: Engine, spec: ModelSpec, answers: list[dict[str, Any]], person: str, origin: str
) -> tuple[int, int]:
    """Human answers to the review queue (the API path). Refuses event ids that are not clean events
    (ValueError), people who answer for the model (``ReviewRefused`` 403) and events that were never queued
    (``ReviewRefused`` 409); both refusals are audited."""
    event_ids = [str(a["event_id"]) for a in answers]
    _check_reviewer(engine, spec, person, event_ids)
    unknown = _unknown_events(engine, spec, event_ids)
    if unknown:
        raise ValueError(f"unknown event ids: {sorted(unknown)[:5]}")
    _check_queued(engine, spec, person, event_ids)
    rows = [
        {"event_id": a["event_id"], "label": int(a["label"]), "labeler": "review-api", "person": person}
        for a in answers
    ]
    return record_label_events(engine, spec, rows, "human", origin, person)


def open_queue(engine: Engine, model: str, limit: int = 500) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        q = (
            select(review_queue)
            .where(review_queue.c.model == model, review_queue.c.status == "open")
            .order_by(review_queue.c.uncertainty.desc(), review_queue.c.event_id)
            .limit(limit)
        )
        return [dict(r) for r in conn.execute(q).mappings()]
