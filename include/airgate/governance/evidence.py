"""What an approver needs around the evidence bundle: label provenance, data validation, and the report files.

The bundle itself (gates.validate) is frozen under its hash. This module adds context read live from the warehouse
(the share of human and auto labels, the Great Expectations results of every clean version the training data came
from) and names the files the plugin may serve for a request. Only paths that the evidence or the warehouse name
are served, so a request can never be turned into a file-read of anything else. The files are read through
storage (``airgate.core.storage``, ``AIRGATE_STORAGE_URL``): the api-server need not share a disk with the workers.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlparse

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from airgate.core import storage
from airgate.core.warehouse import as_utc, data_validations, dataset_versions, labels

ARTIFACT_TYPES = {"pareto.png": "image/png", "drift.html": "text/html", "gate_report.html": "text/html"}


def _ancestors(engine: Engine, version_id: str) -> dict[str, list[str]]:
    """Every dataset version upstream of ``version_id``, by kind (labeled versions chain through their parents)."""
    out: dict[str, list[str]] = {"labeled": [], "clean": [], "raw": []}
    seen: set[str] = set()
    todo = [version_id]
    with engine.connect() as conn:
        while todo:
            batch, todo = todo[:500], todo[500:]
            rows = conn.execute(
                select(
                    dataset_versions.c.version_id, dataset_versions.c.kind, dataset_versions.c.parents
                ).where(dataset_versions.c.version_id.in_(batch))
            ).all()
            for vid, kind, parents in rows:
                if vid in seen:
                    continue
                seen.add(vid)
                out.setdefault(kind, []).append(vid)
                todo += [p for p in parents if p not in seen]
    return out


def label_shares(engine: Engine, labeled_version: str) -> dict[str, Any]:
    with engine.connect() as conn:
        counts = {
            src: int(n)
            for src, n in conn.execute(
                select(labels.c.source, func.count())
                .where(labels.c.version_id == labeled_version)
                .group_by(labels.c.source)
            ).all()
        }
    total = sum(counts.values())
    by_source = {k: counts.get(k, 0) for k in ("ground_truth", "late", "human", "auto")}
    by_source.update({k: v for k, v in counts.items() if k not in by_source})
    return {
        "version_id": labeled_version,
        "total": total,
        "by_source": by_source,
        "human_share": by_source["human"] / total if total else 0.0,
        "auto_share": by_source["auto"] / total if total else 0.0,
    }


def validation_summary(engine: Engine, clean_versions: list[str]) -> dict[str, Any] | None:
    """The newest clean version's GX result, plus how every clean version in the training data fared."""
    if not clean_versions:
        return None
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(data_validations)
                .where(data_validations.c.version_id.in_(clean_versions))
                .order_by(data_validations.c.evaluated_at.desc())
            )
            .mappings()
            .all()
        )
    if not rows:
        return None
    newest = rows[0]
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return {
        "version_id": newest["version_id"],
        "status": newest["status"],
        "critical": newest["critical"],
        "warnings": newest["warnings"],
        "evaluated_at": as_utc(newest["evaluated_at"]),
        "versions_checked": len(rows),
        "by_status": by_status,
        "data_docs_url": f"/airgate/api/data-docs/{quote(newest['model'], safe='')}/index.html"
        if newest["docs_path"]
        else None,
    }


def context(engine: Engine, request: dict[str, Any], runs_dir: storage.Location) -> dict[str, Any]:
    ev = request["evidence"]
    versions = _ancestors(engine, ev["data_version"])
    base = f"/airgate/api/approvals/{quote(str(request['id']), safe='')}/artifacts"
    # the files recorded when the request opened (served only while they still match), else those found now
    files = set(artifact_paths(ev, runs_dir)) | set((request.get("binding") or {}).get("artifacts", {}))
    return {
        "labels": label_shares(engine, ev["data_version"]),
        "validation": validation_summary(engine, versions.get("clean", [])),
        "versions": {
            "labeled": ev["data_version"],
            "clean": versions.get("clean", []),
            "raw": versions.get("raw", []),
        },
        "links": {
            "gate_report": f"{base}/gate_report.html" if "gate_report.html" in files else None,
            "pareto_plot": f"{base}/pareto.png" if "pareto.png" in files else None,
            "drift_report": f"{base}/drift.html" if "drift.html" in files else None,
            "lineage": "/airgate/lineage?"
            + urlencode({"node": f"model_version:{request['model']}/{request['model_version']}"}),
            "mlflow_run": ev.get("mlflow_run_id"),
        },
    }


def artifact_paths(evidence: dict[str, Any], runs_dir: storage.Location) -> dict[str, storage.StoragePath]:
    """The report files a request's evidence names, that exist in storage. Keys are ARTIFACT_TYPES."""
    run = storage.location(runs_dir) / str(evidence.get("training_run_id"))
    named = {
        "pareto.png": (evidence.get("pareto") or {}).get("plot"),
        "drift.html": (evidence.get("drift") or {}).get("html_path"),
        "gate_report.html": run / "gate_report.html",
    }
    out = {}
    for name, path in named.items():
        if not path:
            continue
        loc = storage.location(path)
        if loc.suffix == PurePosixPath(name).suffix and storage.is_file(loc):
            out[name] = loc
    return out


def _site(docs_path: str) -> storage.StoragePath:
    """The Data Docs site folder from its recorded index page: a storage location (what validation records now),
    or a ``file://`` URL as GX gave it (older records, percent-encoded)."""
    parsed = urlparse(docs_path)
    return storage.location(unquote(parsed.path) if parsed.scheme == "file" else docs_path).parent


def data_docs_file(engine: Engine, model: str, relative: str) -> storage.StoragePath | None:
    """A file inside the model's Great Expectations Data Docs site, or None (never a file outside the site: a
    relative path that is absolute, climbs with ``..`` or hides a backslash is refused before storage is asked)."""
    with engine.connect() as conn:
        url = conn.execute(
            select(data_validations.c.docs_path)
            .where(data_validations.c.model == model, data_validations.c.docs_path.is_not(None))
            .order_by(data_validations.c.evaluated_at.desc())
            .limit(1)
        ).scalar()
    if not url:
        return None
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or "\\" in relative or "\0" in relative or ".." in parts:
        return None
    site = _site(url)
    target = site.joinpath(*parts)
    if storage.is_local(site):  # a link inside a local site may still point out of it
        real_site = Path(str(site.path)).resolve()
        if not Path(str(target.path)).resolve().is_relative_to(real_site):
            return None
    return target if storage.is_file(target) else None
