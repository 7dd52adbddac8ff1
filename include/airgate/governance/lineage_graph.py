"""The lineage graph's parts: node kinds and refs, nodes and edges, and the data side of the walk (files,
batches, dataset versions, training runs). ``lineage`` adds the model side and answers the questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from airgate.core.warehouse import (
    as_utc,
    dataset_versions,
    file_ledger,
    model_candidates,
    scoring_runs,
)
from airgate.governance import promotion

KINDS = ("file", "batch", "dataset", "training_run", "model_version", "approval", "scoring_run", "prediction")
MAX_NODES = 400  # a labeled version descends from every batch ever ingested: cap the walk, say so
DOWNSTREAM_LIMIT = 25  # direct children listed per node (e.g. predictions of a scoring run), the rest counted


class LineageError(promotion.GovernanceError):
    """A ref that does not parse or names nothing. ``status`` is the HTTP status to answer with; the code is always
    ``lineage``, so the plugin answers it like any other refusal."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__("lineage", status, message)


@dataclass
class Node:
    ref: str
    kind: str
    label: str
    at: datetime | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "label": self.label,
            "at": as_utc(self.at).isoformat() if self.at else None,
            "attrs": self.attrs,
        }


@dataclass
class Graph:
    focus: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    truncated: bool = False

    def edge(self, source: str, target: str, relation: str) -> None:
        if (source, target, relation) not in self.edges:
            self.edges.append((source, target, relation))

    def to_dict(self) -> dict[str, Any]:
        return {
            "focus": self.focus,
            "nodes": [n.to_dict() for n in self.nodes.values()],
            "edges": [{"source": s, "target": t, "relation": r} for s, t, r in self.edges],
            "truncated": self.truncated,
        }


def ref(kind: str, *parts: object) -> str:
    return f"{kind}:{'/'.join(str(p) for p in parts)}"


def parse_ref(value: str) -> tuple[str, list[str]]:
    kind, sep, key = (value or "").partition(":")
    if not sep or kind not in KINDS or not key:
        raise LineageError(
            f"not a lineage ref: {value!r}; expected <kind>:<key> with kind one of {', '.join(KINDS)}",
            status=422,
        )
    parts = (
        key.split("/", 2) if kind == "prediction" else key.split("/", 1) if kind == "model_version" else [key]
    )
    want = {"prediction": 3, "model_version": 2}.get(kind, 1)
    if len(parts) != want or not all(parts):
        raise LineageError(
            f"{kind} refs look like {kind}:"
            + {"prediction": "<model>/<partition_key>/<event_id>", "model_version": "<model>/<version>"}.get(
                kind, "<id>"
            ),
            status=422,
        )
    return kind, parts


class _DataNodes:
    """The walk's resolvers for the data side, one per kind: (node, upstream refs, downstream refs, total)."""

    conn: Connection

    def _one(self, q: Any, what: str) -> Any:
        row = self.conn.execute(q).first()
        if row is None:
            raise LineageError(f"{what} does not exist")
        return row

    def _file(self, parts: list[str], down: bool) -> Any:
        try:
            fid = int(parts[0])
        except ValueError as exc:
            raise LineageError(f"file ids are numbers, got {parts[0]!r}", status=422) from exc
        r = self._one(select(file_ledger).where(file_ledger.c.id == fid), f"file {fid}")
        node = Node(
            ref("file", r.id),
            "file",
            r.path.rsplit("/", 1)[-1],
            r.ingested_at,
            {
                "path": r.path,
                "sha256": r.sha256,
                "size_bytes": r.size_bytes,
                "status": r.status,
                "model": r.model,
                "error": r.error,
            },
        )
        downs = [(ref("batch", r.batch_id), "ingested in")] if down else []
        return node, [], downs, len(downs)

    def _batch(self, parts: list[str], down: bool) -> Any:
        bid = parts[0]
        files = self.conn.execute(
            select(file_ledger.c.id, file_ledger.c.status)
            .where(file_ledger.c.batch_id == bid)
            .order_by(file_ledger.c.id)
        ).all()
        raws = (
            self.conn.execute(
                select(dataset_versions.c.version_id).where(
                    dataset_versions.c.batch_id == bid, dataset_versions.c.kind == "raw"
                )
            )
            .scalars()
            .all()
        )
        if not files and not raws:
            raise LineageError(f"batch {bid} does not exist")
        node = Node(ref("batch", bid), "batch", bid, None, {"files": len(files)})
        ups = [(ref("file", f.id), "ingested in") for f in files]
        downs = [(ref("dataset", v), "became") for v in raws] if down else []
        return node, ups, downs, len(downs)

    def _dataset(self, parts: list[str], down: bool) -> Any:
        vid = parts[0]
        r = self._one(
            select(dataset_versions).where(dataset_versions.c.version_id == vid), f"dataset version {vid}"
        )
        node = Node(
            ref("dataset", vid),
            "dataset",
            vid,
            r.created_at,
            {
                "kind": r.kind,
                "rows": r.row_count,
                "content_hash": r.content_hash,
                "model": r.model,
                "batch_id": r.batch_id,
            },
        )
        ups = [(ref("dataset", p), "derived into") for p in r.parents]
        if r.batch_id and r.kind == "raw":
            ups.append((ref("batch", r.batch_id), "became"))
        downs: list[tuple[str, str]] = []
        total = 0
        if down:
            kids = [
                v
                for v, parents in self.conn.execute(
                    select(dataset_versions.c.version_id, dataset_versions.c.parents).where(
                        dataset_versions.c.model == r.model
                    )
                ).all()
                if vid in list(parents)
            ]
            runs = (
                self.conn.execute(
                    select(model_candidates.c.training_run_id)
                    .where(model_candidates.c.data_version == vid)
                    .order_by(model_candidates.c.id)
                )
                .scalars()
                .all()
            )
            scored = (
                self.conn.execute(
                    select(scoring_runs.c.run_id)
                    .where(scoring_runs.c.feature_data_version == vid)
                    .order_by(scoring_runs.c.started_at)
                )
                .scalars()
                .all()
            )
            downs = (
                [(ref("dataset", k), "derived into") for k in kids]
                + [(ref("training_run", t), "trained") for t in runs]
                + [(ref("scoring_run", s), "scored in") for s in scored]
            )
            total = len(downs)
        return node, ups, downs[:DOWNSTREAM_LIMIT], total

    def _training_run(self, parts: list[str], down: bool) -> Any:
        tid = parts[0]
        r = self._one(
            select(model_candidates).where(model_candidates.c.training_run_id == tid), f"training run {tid}"
        )
        m = r.metrics or {}
        chosen = m.get("chosen")
        node = Node(
            ref("training_run", tid),
            "training_run",
            tid,
            r.created_at,
            {
                "trained_by": r.trained_by,
                "status": r.status,
                "mlflow_run_id": r.mlflow_run_id,
                "code_version": r.code_version,
                "chosen": chosen,
                "evidence_hash": r.evidence_hash,
                "test_auc": ((m.get("candidates") or {}).get(chosen) or {}).get("test_auc"),
            },
        )
        ups = [(ref("dataset", r.data_version), "trained")]
        downs = (
            [(ref("model_version", r.model, r.model_version), "registered as")]
            if down and r.model_version
            else []
        )
        return node, ups, downs, len(downs)
