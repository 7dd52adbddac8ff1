"""Materialized features: the point-in-time features of one clean version, computed once, kept as files.

A clean version's features are a function of the history as it stood when the version was cleaned and of the
feature code, so they are computed once (the clean DAG does it right after validation) and written as Parquet
shards split by student, keyed by (clean version, feature code, shard count). Nightly scoring reads them as they
are: its plan points the shard tasks at these files instead of recomputing every feature over the whole history
on the night's critical path, and the scores of a date can be reproduced from the exact feature rows they used.

The rows are computed by ``features.build_features``, the function training uses: there is one feature path.

The files live in storage (``airgate.core.storage``: ``runs/features/`` under ``AIRGATE_STORAGE_URL``), so the clean
DAG's worker and every scoring worker, on any host, see the same ones. An object store has no atomic folder
rename, so a feature set is committed by its manifest, written last: the shards it names carry the writing
attempt's id, so the manifest only ever names files that one attempt wrote whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.data import features
from airgate.data.features import FEATURES, build_features, load_history

log = logging.getLogger(__name__)

ID_COLUMNS = ["event_id", "student_id", "item_id"]


def feature_code() -> str:
    """The feature code's fingerprint: new feature code means new feature files, never stale ones."""
    return hashlib.sha256(Path(features.__file__).read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class FeatureShard:
    index: int
    path: str
    rows: int


@dataclass(frozen=True)
class FeatureSet:
    model: str
    version_id: str
    code: str
    partitions: int
    shards: list[FeatureShard] = field(default_factory=list)
    seconds: float = 0.0
    created: bool = False  # False: it was already there

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_of(student_ids: pd.Series, n: int) -> np.ndarray:
    """Stable shard number of each student (the same on every run and machine: a hash of the id, not Python's)."""
    if n == 1:
        return np.zeros(len(student_ids), dtype="int64")
    h = pd.util.hash_pandas_object(student_ids.astype(str), index=False).to_numpy()
    return (h % np.uint64(n)).astype("int64")


def set_dir(runs_dir: storage.Location, model: str, version_id: str, partitions: int) -> storage.StoragePath:
    return storage.location(runs_dir) / "features" / model / f"{version_id}-{feature_code()}-p{partitions}"


def write_parquet(df: pd.DataFrame, path: storage.Location, row_group: int) -> storage.StoragePath:
    """Row groups of one scoring chunk, so a scorer can stream the file a chunk at a time; written whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink, row_group_size=max(row_group, 1))
    return storage.write_bytes_atomic(path, sink.getvalue().to_pybytes())


def read_parquet(path: storage.Location, columns: list[str] | None = None, what: str = "") -> pd.DataFrame:
    """A Parquet file from storage (only the columns asked for are read)."""
    with storage.open_read(path, what) as fh:
        return pd.read_parquet(fh, columns=columns)


def _load(folder: storage.StoragePath, created: bool, seconds: float) -> FeatureSet:
    m = json.loads(storage.read_text(folder / "manifest.json", what="a feature set's manifest"))
    return FeatureSet(
        m["model"],
        m["version_id"],
        m["code"],
        m["partitions"],
        [FeatureShard(s["index"], storage.as_string(folder / s["file"]), s["rows"]) for s in m["shards"]],
        seconds,
        created,
    )


def materialize(
    engine: Engine,
    spec: ModelSpec,
    version_id: str,
    runs_dir: storage.Location,
    partitions: int | None = None,
    actor: str = "airflow",
    history: pd.DataFrame | None = None,
) -> FeatureSet:
    """The features of ``version_id``, computed and written once; later calls (retries, the nightly plan, other
    workers) get the same files. ``history`` saves a second read when the caller holds it already."""
    n = partitions or spec.scoring.partitions
    folder = set_dir(runs_dir, spec.name, version_id, n)
    manifest_path = folder / "manifest.json"
    if storage.exists(manifest_path):
        return _load(folder, False, 0.0)
    t0 = time.perf_counter()
    version = datasets.get(engine, version_id)
    if version is None or version.model != spec.name or version.kind != "clean":
        raise ValueError(
            f"clean version {version_id} of {spec.name} has no rows to compute features for: there is no such "
            "clean version (list them with datasets.list_versions)"
        )
    if version.row_count == 0:  # every row quarantined: a valid version, with an empty feature set
        return _commit(engine, spec, folder, version_id, _no_rows(), n, actor, t0)
    hist = load_history(engine, spec.name) if history is None else history
    if not (hist["version_id"] == version_id).any():
        raise ValueError(f"clean version {version_id} of {spec.name} has no rows to compute features for")
    feats = build_features(hist)
    rows = hist.loc[hist["version_id"] == version_id, ID_COLUMNS].merge(feats, on="event_id", how="left")
    rows = rows.sort_values("event_id", kind="mergesort").reset_index(drop=True)
    return _commit(engine, spec, folder, version_id, rows, n, actor, t0)


def _no_rows() -> pd.DataFrame:
    """The feature rows of an empty clean version: the columns, typed, and no row."""
    ids = {c: pd.Series([], dtype=object) for c in ID_COLUMNS}
    return pd.DataFrame({**ids, **{f: pd.Series([], dtype="float64") for f in FEATURES}})


def _commit(
    engine: Engine,
    spec: ModelSpec,
    folder: storage.StoragePath,
    version_id: str,
    rows: pd.DataFrame,
    n: int,
    actor: str,
    t0: float,
) -> FeatureSet:
    """Write the shards, then the manifest (the commit), audited."""
    manifest_path = folder / "manifest.json"
    shard_no = shard_of(rows["student_id"], n)
    attempt = uuid.uuid4().hex[:8]  # this attempt's own file names: a racing worker never overwrites them
    shards = []
    for i in range(n):
        part = rows.loc[shard_no == i, ID_COLUMNS + FEATURES]
        name = f"shard-{i:03d}-{attempt}.parquet"
        write_parquet(part, folder / name, spec.scoring.chunk_rows)
        shards.append({"index": i, "file": name, "rows": len(part)})
    manifest = {
        "model": spec.name,
        "version_id": version_id,
        "code": feature_code(),
        "partitions": n,
        "shards": shards,
        "columns": ID_COLUMNS + FEATURES,
    }
    if storage.exists(manifest_path):  # another worker finished first; theirs is the feature set
        return _load(folder, False, time.perf_counter() - t0)
    storage.write_text_atomic(
        manifest_path, json.dumps(manifest, indent=1)
    )  # the commit: the set is there whole
    seconds = time.perf_counter() - t0
    audit.record(
        engine,
        actor=actor,
        event_type="features_materialized",
        model=spec.name,
        entity={"data_version": version_id},
        details={
            "rows": len(rows),
            "shards": n,
            "feature_code": manifest["code"],
            "seconds": round(seconds, 3),
        },
    )
    log.info("materialized %d feature rows of %s in %d shards (%.1fs)", len(rows), version_id, n, seconds)
    return _load(folder, True, seconds)


def materialize_versions(
    engine: Engine,
    spec: ModelSpec,
    version_ids: list[str],
    runs_dir: storage.Location,
    actor: str = "airflow",
) -> dict[str, dict[str, Any]]:
    """Each new clean version's features, once (nightly scoring reads these files); per version a small summary."""
    out: dict[str, dict[str, Any]] = {}
    for version_id in version_ids:
        fs = materialize(engine, spec, version_id, runs_dir, actor=actor)
        out[version_id] = {"rows": fs.rows, "shards": len(fs.shards), "created": fs.created}
    return out
