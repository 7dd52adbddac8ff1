"""Labeling: each labeled version is the previous one plus the labels of the clean versions that arrived since.

This foundation passes existing ground-truth labels through, with provenance (source, labeler, confidence).
Labeled versions are cumulative and immutable: the labels of a version are stored under its own id, so relabeling
later creates a new version and never edits an old one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate import audit, datasets
from airgate.spec import ModelSpec
from airgate.warehouse import bulk_insert, clean_events, labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelResult:
    model: str
    labeled_version_id: str | None
    created: bool
    rows: int
    new_labels: int
    by_source: dict[str, int]
    clean_versions: list[str]


def label_pending(engine: Engine, spec: ModelSpec, actor: str = "airflow") -> LabelResult:
    prev = datasets.latest(engine, spec.name, "labeled")
    included: list[str] = list(prev.summary.get("clean_versions", [])) if prev else []
    all_clean = [v.version_id for v in datasets.list_versions(engine, spec.name, "clean")]
    new = [v for v in all_clean if v not in set(included)]
    if not new:
        return LabelResult(spec.name, prev.version_id if prev else None, False, prev.row_count if prev else 0, 0,
                           dict(prev.summary.get("by_source", {})) if prev else {}, included)

    with engine.connect() as conn:
        old = conn.execute(select(labels.c.event_id, labels.c.label, labels.c.source, labels.c.labeler,
                                  labels.c.confidence)
                           .where(labels.c.version_id == prev.version_id)).all() if prev else []
        fresh = conn.execute(select(clean_events.c.event_id, clean_events.c.correct)
                             .where(clean_events.c.version_id.in_(new), clean_events.c.correct.is_not(None))).all()
    if not spec.label_policy.use_ground_truth:
        fresh = []
    rows = {r.event_id: (r.label, r.source, r.labeler, r.confidence) for r in old}
    for event_id, correct in fresh:
        rows.setdefault(event_id, (int(correct), "ground_truth", "app", 1.0))
    ordered = sorted(rows.items())
    digest = datasets.content_hash("labeled", spec.name, ((k, v[0], v[1]) for k, v in ordered),
                                   extra={"clean_versions": included + new})
    by_source: dict[str, int] = {}
    for _, v in ordered:
        by_source[v[1]] = by_source.get(v[1], 0) + 1
    summary = {"clean_versions": included + new, "by_source": by_source, "rows_added": len(ordered) - len(old),
               "rows_removed": 0, "relabeled": 0}
    parents = ([prev.version_id] if prev else []) + new
    with engine.begin() as conn:
        vid = datasets.insert_version(conn, model=spec.name, kind="labeled", digest=digest, parents=parents,
                                      row_count=len(ordered), schema={"columns": ["event_id", "label"]},
                                      summary=summary)
        added = [{"version_id": vid, "event_id": k, "label": v[0], "source": v[1], "labeler": v[2],
                  "confidence": v[3]} for k, v in ordered]
        bulk_insert(conn, labels, added)
        audit.append(conn, actor=actor, event_type="label", model=spec.name,
                     entity={"labeled_version_id": vid, "parents": parents},
                     details={"rows": len(ordered), "new_labels": len(ordered) - len(old), "by_source": by_source})
    log.info("labeled version %s: %d rows (%d new)", vid, len(ordered), len(ordered) - len(old))
    return LabelResult(spec.name, vid, True, len(ordered), len(ordered) - len(old), by_source, included + new)
