"""Lineage: follow the ids from a prediction back to the files it came from, and one step forward from anything.

Every hand-off in airgate is an id naming an immutable thing (ARCHITECTURE: the flow of ids), so lineage is a walk
over the warehouse's own tables: no separate lineage store to keep in step. A node is named by a ref
``<kind>:<key>``; the graph holds the focus, everything upstream of it, and its direct downstream, so a page can
step both ways one click at a time.

"As of" answers what an auditor asks after the fact: which approved version was champion at time T (the ledger),
and which version produced batch X as it stood at T (the scoring runs).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from airgate.core.warehouse import (
    approval_decisions,
    approval_requests,
    as_utc,
    model_candidates,
    predictions,
    promotion_ledger,
    published_predictions,
    scoring_runs,
)
from airgate.governance import promotion
from airgate.governance.lineage_graph import (  # noqa: F401 - re-exported: callers import them from here
    DOWNSTREAM_LIMIT,
    KINDS,
    MAX_NODES,
    Graph,
    LineageError,
    Node,
    _DataNodes,
    parse_ref,
    ref,
)


class _Walker(_DataNodes):
    """Resolves one ref to its node, its upstream refs and (for the focus only) its downstream refs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- one function per kind: (node, [(upstream ref, relation)], [(downstream ref, relation)], downstream total)
    def resolve(
        self, kind: str, parts: list[str], with_downstream: bool
    ) -> tuple[Node, list[tuple[str, str]], list[tuple[str, str]], int]:
        fn = getattr(self, f"_{kind}")
        return fn(parts, with_downstream)  # type: ignore[no-any-return]

    def _model_version(self, parts: list[str], down: bool) -> Any:
        model, version = parts
        cand = self.conn.execute(
            select(model_candidates).where(
                model_candidates.c.model == model, model_candidates.c.model_version == version
            )
        ).first()
        req = self.conn.execute(
            select(approval_requests.c.id, approval_requests.c.status).where(
                approval_requests.c.model == model, approval_requests.c.model_version == version
            )
        ).first()
        if cand is None and req is None:
            raise LineageError(f"{model} v{version} is not a registered airgate model version")
        champ = promotion.current_champion(self.conn, model)
        node = Node(
            ref("model_version", model, version),
            "model_version",
            f"{model} v{version}",
            None,
            {
                "model": model,
                "version": version,
                "champion": bool(champ and champ.version == version),
                "approval_status": req.status if req else None,
                "kind": ((cand.metrics or {}).get("kind") if cand else None),
            },
        )
        ups = [(ref("training_run", cand.training_run_id), "registered as")] if cand else []
        downs: list[tuple[str, str]] = []
        total = 0
        if down:
            if req is not None:
                downs.append((ref("approval", req.id), "reviewed in"))
            runs = (
                self.conn.execute(
                    select(scoring_runs.c.run_id)
                    .where(scoring_runs.c.model == model, scoring_runs.c.model_version == version)
                    .order_by(scoring_runs.c.started_at.desc())
                )
                .scalars()
                .all()
            )
            downs += [(ref("scoring_run", s), "scored") for s in runs]
            total = len(downs)
        return node, ups, downs[:DOWNSTREAM_LIMIT], total

    def _approval(self, parts: list[str], down: bool) -> Any:
        rid = parts[0]
        r = self._one(
            select(approval_requests).where(approval_requests.c.id == rid), f"approval request {rid}"
        )
        decisions = [
            {
                "actor": d.actor,
                "decision": d.decision,
                "comment": d.comment,
                "at": as_utc(d.decided_at).isoformat() if d.decided_at else None,
            }
            for d in self.conn.execute(
                select(approval_decisions)
                .where(approval_decisions.c.request_id == rid)
                .order_by(approval_decisions.c.id)
            )
        ]
        ledger = [
            {
                "id": e.id,
                "action": e.action,
                "from_version": e.from_version,
                "to_version": e.to_version,
                "actor": e.actor,
                "reason": e.reason,
                "at": as_utc(e.at).isoformat() if e.at else None,
            }
            for e in self.conn.execute(
                select(promotion_ledger)
                .where(promotion_ledger.c.approval_id == rid)
                .order_by(promotion_ledger.c.id)
            )
        ]
        node = Node(
            ref("approval", rid),
            "approval",
            rid,
            r.decided_at or r.created_at,
            {
                "status": r.status,
                "requested_by": r.requested_by,
                "owner": r.owner,
                "quorum": r.quorum,
                "evidence_hash": r.evidence_hash,
                "approvers": [d["actor"] for d in decisions if d["decision"] == "approve"],
                "decisions": decisions,
                "ledger": ledger,
            },
        )
        ups = [(ref("model_version", r.model, r.model_version), "reviewed in")]
        downs: list[tuple[str, str]] = []
        total = 0
        if down:
            runs = (
                self.conn.execute(
                    select(scoring_runs.c.run_id)
                    .where(scoring_runs.c.approval_id == rid)
                    .order_by(scoring_runs.c.started_at.desc())
                )
                .scalars()
                .all()
            )
            downs = [(ref("scoring_run", s), "authorised") for s in runs]
            total = len(downs)
        return node, ups, downs[:DOWNSTREAM_LIMIT], total

    def _scoring_run(self, parts: list[str], down: bool) -> Any:
        run_id = parts[0]
        r = self._one(select(scoring_runs).where(scoring_runs.c.run_id == run_id), f"scoring run {run_id}")
        # How the version came to be champion when this run started: a promotion, or a rollback.
        entry = self.conn.execute(
            select(promotion_ledger)
            .where(promotion_ledger.c.model == r.model, promotion_ledger.c.at <= r.started_at)
            .order_by(promotion_ledger.c.id.desc())
            .limit(1)
        ).first()
        node = Node(
            ref("scoring_run", run_id),
            "scoring_run",
            run_id,
            r.started_at,
            {
                "model": r.model,
                "partition_key": r.partition_key,
                "model_version": r.model_version,
                "approval_id": r.approval_id,
                "rows_scored": r.rows_scored,
                "status": r.status,
                "finished_at": as_utc(r.finished_at).isoformat() if r.finished_at else None,
                "champion_by": None
                if entry is None
                else {
                    "ledger_id": entry.id,
                    "action": entry.action,
                    "actor": entry.actor,
                    "reason": entry.reason,
                    "from_version": entry.from_version,
                    "to_version": entry.to_version,
                },
            },
        )
        ups = [
            (ref("model_version", r.model, r.model_version), "scored"),
            (ref("approval", r.approval_id), "authorised"),
            (ref("dataset", r.feature_data_version), "scored in"),
        ]
        downs: list[tuple[str, str]] = []
        total = 0
        if down:
            total = int(
                self.conn.execute(
                    select(func.count())
                    .select_from(predictions)
                    .where(predictions.c.scoring_run_id == run_id)
                ).scalar_one()
            )
            rows = self.conn.execute(
                select(predictions.c.partition_key, predictions.c.event_id)
                .where(predictions.c.scoring_run_id == run_id)
                .order_by(predictions.c.event_id)
                .limit(DOWNSTREAM_LIMIT)
            ).all()
            downs = [(ref("prediction", r.model, p.partition_key, p.event_id), "predicted") for p in rows]
        return node, ups, downs, total

    def _prediction(self, parts: list[str], down: bool) -> Any:
        model, partition, event = parts
        r = self._one(
            published_predictions(model, partition).where(predictions.c.event_id == event),
            f"prediction {model}/{partition}/{event}",
        )
        node = Node(
            ref("prediction", model, partition, event),
            "prediction",
            f"{event} @ {partition}",
            None,
            {
                "score": r.score,
                "student_id": r.student_id,
                "item_id": r.item_id,
                "model_version": r.model_version,
                "approval_id": r.approval_id,
                "scoring_run_id": r.scoring_run_id,
                "feature_data_version": r.feature_data_version,
            },
        )
        return node, [(ref("scoring_run", r.scoring_run_id), "predicted")], [], 0


def graph(engine: Engine, node_ref: str, max_nodes: int = MAX_NODES) -> dict[str, Any]:
    """The focus node, everything upstream of it (to the source files), and its direct downstream."""
    kind, parts = parse_ref(node_ref)
    with engine.connect() as conn:
        walker = _Walker(conn)
        node, ups, downs, total = walker.resolve(kind, parts, with_downstream=True)
        g = Graph(node.ref)
        g.nodes[node.ref] = node
        node.attrs["downstream_total"] = total
        for child, relation in downs:
            ck, cp = parse_ref(child)
            try:
                g.nodes[child] = walker.resolve(ck, cp, with_downstream=False)[0]
            except LineageError:
                continue
            g.edge(node.ref, child, relation)
        queue = deque([(node.ref, ups)])
        while queue:
            target, parents = queue.popleft()
            for parent, relation in parents:
                g.edge(parent, target, relation)
                if parent in g.nodes:
                    continue
                if len(g.nodes) >= max_nodes:
                    g.truncated = True
                    continue
                pk, pp = parse_ref(parent)
                try:
                    pnode, pups, _, _ = walker.resolve(pk, pp, with_downstream=False)
                except LineageError as exc:  # a dangling id is itself a finding: show it, do not hide it
                    pnode, pups = Node(parent, pk, parent, None, {"missing": exc.message}), []
                g.nodes[parent] = pnode
                queue.append((parent, pups))
    return g.to_dict()


def as_of(engine: Engine, model: str, at: datetime, partition_key: str | None = None) -> dict[str, Any]:
    """Which approved version was champion at ``at``, and which version had produced ``partition_key`` by then."""
    at = as_utc(at) or at
    with engine.connect() as conn:
        champ = promotion.champion_as_of(conn, model, at)
        run = None
        if partition_key:
            r = conn.execute(
                select(scoring_runs)
                .where(
                    scoring_runs.c.model == model,
                    scoring_runs.c.partition_key == partition_key,
                    scoring_runs.c.status == "succeeded",
                    scoring_runs.c.finished_at <= at,
                )
                .order_by(scoring_runs.c.finished_at.desc())
                .limit(1)
            ).first()
            if r is not None:
                approvers = (
                    conn.execute(
                        select(approval_decisions.c.actor)
                        .where(
                            approval_decisions.c.request_id == r.approval_id,
                            approval_decisions.c.decision == "approve",
                        )
                        .order_by(approval_decisions.c.id)
                    )
                    .scalars()
                    .all()
                )
                run = {
                    "run_id": r.run_id,
                    "model_version": r.model_version,
                    "approval_id": r.approval_id,
                    "approvers": list(approvers),
                    "feature_data_version": r.feature_data_version,
                    "started_at": as_utc(r.started_at),
                    "finished_at": as_utc(r.finished_at),
                    "rows_scored": r.rows_scored,
                    "lineage": ref("scoring_run", r.run_id),
                }
    return {"model": model, "at": at, "partition_key": partition_key, "champion": champ, "scoring_run": run}
