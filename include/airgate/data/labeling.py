"""Labeling: every labeled version says, for every row it labels, where the label came from.

Sources, in order of trust (a more trusted label replaces a less trusted one for the same event):

1. ``ground_truth``: the app's own grade, in the interaction data.
2. ``late``: grades that arrive afterwards (files in the late-labels folder), joined by ``event_id``.
3. ``human``: answers to the review queue, by file drop or through the governance API, with the person's name.
4. ``auto``: the approved champion's prediction, taken only at or above the spec's confidence threshold.

Rows still unlabeled after that feed the review queue: the most uncertain ones under the champion (uncertainty
sampling), up to the spec's budget. Late and human labels are append-only label events (one per event and
source), so a file dropped twice or an answer sent twice counts once. Labeled versions are cumulative and
immutable: relabeling creates a new version with a change summary (added, removed, relabeled).

Label files are read from storage (``airgate.core.storage``: the spec's folders, relative ones under
``AIRGATE_STORAGE_URL``), where the grader and the reviewers drop them; a file's origin is its location as
``storage.as_string`` writes it (a plain path on a local root).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import bulk_insert, clean_events, label_events, labels, review_queue, utcnow
from airgate.data.label_events import (  # noqa: F401 - re-exported: callers import them from here
    TRUST,
    TRUSTED_SOURCES,
    LabelFileOutcome,
    LabelResult,
    Predictor,
    ReviewRefused,
    _parse_label_file,
    _unknown_events,
    answer_reviews,
    ingest_label_files,
    open_queue,
    record_label_events,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- versions


def _resolve(gt: pd.DataFrame, ev: pd.DataFrame) -> pd.DataFrame:
    """One label per event: the most trusted source wins."""
    frames = [gt.assign(source="ground_truth", labeler="app", person=None, confidence=1.0)]
    if len(ev):
        frames.append(
            ev.assign(confidence=1.0)[
                ["event_id", "label", "source", "labeler", "person", "confidence", "labeled_at"]
            ]
        )
    allx = pd.concat(frames, ignore_index=True)
    allx["trust"] = allx["source"].map(TRUST)
    return allx.sort_values(["event_id", "trust"], ascending=[True, False]).drop_duplicates("event_id")


def _label_events_upto(engine: Engine, model: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.max(label_events.c.id), 0)).where(label_events.c.model == model)
            ).scalar_one()
        )


def _new_clean_versions(engine: Engine, spec: ModelSpec, included: list[str]) -> list[str]:
    """Clean versions not yet in a labeled version; one that failed critical validation is never labeled."""
    from airgate.data.checks import failed_versions

    failed = failed_versions(engine, spec.name)
    all_clean = [
        v.version_id for v in datasets.list_versions(engine, spec.name, "clean") if v.version_id not in failed
    ]
    return [v for v in all_clean if v not in set(included)]


def _inputs(
    engine: Engine, spec: ModelSpec, versions: list[str], upto: int, prev_version_id: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(clean events of ``versions``, label events up to ``upto``, the previous labeled version's labels)."""
    with engine.connect() as conn:
        events = pd.DataFrame(
            conn.execute(
                select(clean_events.c.event_id, clean_events.c.correct, clean_events.c.ts).where(
                    clean_events.c.version_id.in_(versions)
                )
            ).all(),
            columns=["event_id", "correct", "ts"],
        )
        ev = pd.DataFrame(
            conn.execute(
                select(
                    label_events.c.event_id,
                    label_events.c.label,
                    label_events.c.source,
                    label_events.c.labeler,
                    label_events.c.person,
                    label_events.c.observed_at.label("labeled_at"),
                ).where(label_events.c.model == spec.name, label_events.c.id <= upto)
            ).all(),
            columns=["event_id", "label", "source", "labeler", "person", "labeled_at"],
        )
        old = (
            pd.DataFrame(
                conn.execute(
                    select(labels.c.event_id, labels.c.label, labels.c.source).where(
                        labels.c.version_id == prev_version_id
                    )
                ).all(),
                columns=["event_id", "label", "source"],
            )
            if prev_version_id
            else pd.DataFrame(columns=["event_id", "label", "source"])
        )
    return events, ev, old


def _resolved_labels(
    engine: Engine, spec: ModelSpec, events: pd.DataFrame, ev: pd.DataFrame, predictor: Predictor | None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One label per event (the most trusted source), auto labels for confident unlabeled rows, and the rows
    to queue for review."""
    gt = events.loc[events["correct"].notna() & spec.label_policy.use_ground_truth, ["event_id", "correct"]]
    gt = gt.rename(columns={"correct": "label"}).assign(labeled_at=pd.NaT)
    ev = ev[ev["event_id"].isin(set(events["event_id"]))]
    resolved = _resolve(gt, ev)
    unlabeled = events.loc[~events["event_id"].isin(set(resolved["event_id"])), "event_id"]
    queue_rows: list[dict[str, Any]] = []
    if predictor is not None and len(unlabeled):
        auto, queue_rows = _auto_and_queue(engine, spec, predictor, set(unlabeled))
        resolved = pd.concat([resolved, auto], ignore_index=True)
    resolved = resolved.sort_values("event_id").reset_index(drop=True)
    resolved["label"] = resolved["label"].astype(int)
    return resolved, queue_rows


def _changes(old: pd.DataFrame, resolved: pd.DataFrame) -> tuple[int, int, int]:
    """(rows added, rows removed, rows relabeled) against the previous labeled version."""
    merged = old.merge(
        resolved[["event_id", "label"]], on="event_id", how="outer", suffixes=("_old", "_new"), indicator=True
    )
    both = merged[merged["_merge"] == "both"]
    return (
        int((merged["_merge"] == "right_only").sum()),
        int((merged["_merge"] == "left_only").sum()),
        int((both["label_old"].astype(int) != both["label_new"].astype(int)).sum()),
    )


def _write_version(
    engine: Engine,
    spec: ModelSpec,
    digest: str,
    parents: list[str],
    resolved: pd.DataFrame,
    queue_rows: list[dict[str, Any]],
    summary: dict[str, Any],
    actor: str,
) -> str:
    """The labeled version, its labels, its review queue and its audit event in one transaction; the version's
    id either way (the same content as an existing version, e.g. a retry after commit, is that version)."""
    now = utcnow()
    try:
        with engine.begin() as conn:
            vid = datasets.insert_version(
                conn,
                model=spec.name,
                kind="labeled",
                digest=digest,
                parents=parents,
                row_count=len(resolved),
                schema={"columns": ["event_id", "label"]},
                summary=summary,
            )
            rows = [
                {
                    "version_id": vid,
                    "event_id": r.event_id,
                    "label": int(r.label),
                    "source": r.source,
                    "labeler": r.labeler,
                    "confidence": float(r.confidence),
                    "labeled_at": None
                    if pd.isna(r.labeled_at)
                    else pd.Timestamp(r.labeled_at).to_pydatetime(),
                    "person": r.person if isinstance(r.person, str) else None,
                }
                for r in resolved.itertuples(index=False)
            ]
            bulk_insert(conn, labels, rows)
            if queue_rows:
                bulk_insert(
                    conn,
                    review_queue,
                    [dict(q, labeled_version_id=vid, status="open", queued_at=now) for q in queue_rows],
                )
            audit.append(
                conn,
                actor=actor,
                event_type="label",
                model=spec.name,
                entity={"labeled_version_id": vid, "parents": parents},
                details=summary,
            )
            datasets.move_current(conn, spec.name, "labeled", vid, actor, "new labeled version")
    except IntegrityError:
        vid = datasets.version_id("labeled", digest)
    return vid


def label_pending(
    engine: Engine, spec: ModelSpec, actor: str = "airflow", predictor: Predictor | None = None
) -> LabelResult:
    """The next labeled version, when there are new clean versions or new label events; else the current one
    (``created`` False)."""
    prev = datasets.latest(engine, spec.name, "labeled")
    included: list[str] = list(prev.summary.get("clean_versions", [])) if prev else []
    new = _new_clean_versions(engine, spec, included)
    upto = _label_events_upto(engine, spec.name)
    prev_upto = int(prev.summary.get("label_events_upto", 0)) if prev else 0
    if not new and upto == prev_upto:
        return LabelResult(
            spec.name,
            prev.version_id if prev else None,
            False,
            prev.row_count if prev else 0,
            0,
            dict(prev.summary.get("by_source", {})) if prev else {},
            included,
        )

    versions = included + new
    events, ev, old = _inputs(engine, spec, versions, upto, prev.version_id if prev else None)
    resolved, queue_rows = _resolved_labels(engine, spec, events, ev, predictor)
    digest = datasets.content_hash(
        "labeled", spec.name, labeled_rows_for_hash(resolved), extra={"clean_versions": versions}
    )
    added, removed, relabeled = _changes(old, resolved)
    by_source = {str(k): int(v) for k, v in resolved["source"].value_counts().sort_index().items()}
    auto_share = by_source.get("auto", 0) / max(len(resolved), 1)
    summary: dict[str, Any] = {
        "clean_versions": versions,
        "label_events_upto": upto,
        "by_source": by_source,
        "rows_added": added,
        "rows_removed": removed,
        "relabeled": relabeled,
        "auto_share": round(auto_share, 4),
        "unlabeled": int(len(events) - len(resolved)),
        "queued": len(queue_rows),
        "auto_labeler": predictor.model_version if predictor else None,
        "auto_label_min_confidence": spec.label_policy.auto_label_min_confidence,
    }
    parents = ([prev.version_id] if prev else []) + new
    vid = _write_version(engine, spec, digest, parents, resolved, queue_rows, summary, actor)
    log.info(
        "labeled version %s: %d rows %s, %d queued for review", vid, len(resolved), by_source, len(queue_rows)
    )
    return LabelResult(
        spec.name,
        vid,
        True,
        len(resolved),
        added,
        by_source,
        versions,
        relabeled,
        len(queue_rows),
        auto_share,
        summary,
    )


def labeled_rows_for_hash(rows: pd.DataFrame) -> list[tuple[str, int, str, str]]:
    """The canonical content of a labeled version: (event_id, label, source, labeler), sorted in Python."""
    return sorted(
        (str(r.event_id), int(r.label), str(r.source), str(r.labeler))
        for r in rows[["event_id", "label", "source", "labeler"]].itertuples(index=False)
    )


def _auto_and_queue(
    engine: Engine, spec: ModelSpec, predictor: Predictor, unlabeled: set[str]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Auto-label the confident unlabeled rows; queue the most uncertain of the rest, within the budget."""
    from airgate.data.features import build_features, load_history

    hist = load_history(engine, spec.name)
    feats = build_features(hist).merge(hist[["event_id", "student_id"]], on="event_id")
    target = feats[feats["event_id"].isin(unlabeled)]
    p = np.asarray(predictor.predict(hist, target), dtype="float64")
    conf = np.maximum(p, 1 - p)
    take = conf >= spec.label_policy.auto_label_min_confidence
    auto = pd.DataFrame(
        {
            "event_id": target["event_id"].to_numpy()[take],
            "label": (p[take] >= 0.5).astype(int),
            "source": "auto",
            "labeler": f"{spec.name}@v{predictor.model_version}",
            "person": None,
            "confidence": conf[take],
            "labeled_at": pd.Timestamp(utcnow()),
        }
    )
    rest = pd.DataFrame(
        {
            "event_id": target["event_id"].to_numpy()[~take],
            "p": p[~take],
            "uncertainty": 1.0 - np.abs(p[~take] - 0.5) * 2,
        }
    )
    with engine.connect() as conn:
        queued: dict[str, str] = {
            r.event_id: r.status
            for r in conn.execute(
                select(review_queue.c.event_id, review_queue.c.status).where(
                    review_queue.c.model == spec.name
                )
            )
        }
    rest = rest[~rest["event_id"].isin(queued)].sort_values(
        ["uncertainty", "event_id"], ascending=[False, True]
    )
    # The budget is the size of the open queue: people are never handed more than that at once.
    budget = max(spec.label_policy.review_budget - sum(s == "open" for s in queued.values()), 0)
    queue = [
        {
            "model": spec.name,
            "event_id": r.event_id,
            "p": float(r.p),
            "uncertainty": float(r.uncertainty),
            "model_version": predictor.model_version,
        }
        for r in rest.head(budget).itertuples(index=False)
    ]
    return auto, queue


@dataclass(frozen=True)
class LabelRound:
    """One label DAG run: the label files it read (per source) and the labeled version it built, if any."""

    result: LabelResult
    label_files: dict[str, list[dict[str, Any]]]

    def summary(self) -> dict[str, Any]:
        """The small JSON the label DAG hands on."""
        r = self.result
        return {
            "labeled_version_id": r.labeled_version_id,
            "rows": r.rows,
            "by_source": r.by_source,
            "queued": r.queued,
            "relabeled": r.relabeled,
            "label_files": self.label_files,
        }


def label_round(
    engine: Engine,
    spec: ModelSpec,
    label_dirs: dict[str, storage.Location],
    predictor: Predictor | None,
    actor: str = "airflow",
) -> LabelRound:
    """Late grades and review answers first (``label_dirs``: source -> folder of label files, each read once),
    then the next labeled version, auto-labeled by ``predictor`` (the champion, when there is one;
    ``airgate.serving.autolabel``): in one task, since the version
    needs the files and a hop between two tasks costs a task start under a scheduler."""
    files = {
        source: [o.__dict__ for o in ingest_label_files(engine, spec, folder, source, actor=actor)]
        for source, folder in label_dirs.items()
    }
    result = label_pending(engine, spec, actor=actor, predictor=predictor)
    return LabelRound(result, files)
