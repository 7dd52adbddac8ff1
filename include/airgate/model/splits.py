"""The training frame and its split by time, written once per training run; the test split is read once.

Heavy modules (pandas) are imported inside the functions: this module is imported wherever training is, DAG files
included, and only the tasks that run it should pay for them.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from airgate.core import audit, datasets, storage
from airgate.core.spec import ModelSpec
from airgate.core.warehouse import labels, test_set_reads, utcnow
from airgate.data.features import FEATURES
from airgate.model import tuning
from airgate.model.contracts import SplitManifest, TrainConfig, run_dir

if TYPE_CHECKING:
    import pandas as pd

SPLIT_COLUMNS = ["event_id", "student_id", "item_id", "ts", "label", "source", *FEATURES]
MIN_ROWS_PER_PART = 50


class TestSetAlreadyRead(RuntimeError):
    """The test split of this training run was already read for another model: a second look is refused."""


def training_frame(engine: Engine, spec: ModelSpec, labeled_version_id: str) -> pd.DataFrame:
    """Features for every labeled row of the version, computed from its full point-in-time history."""
    import pandas as pd

    from airgate.data.features import build_features, load_history

    v = datasets.get(engine, labeled_version_id)
    if v is None or v.kind != "labeled":
        raise ValueError(f"{labeled_version_id} is not a labeled dataset version of {spec.name}")
    history = load_history(engine, spec.name, list(v.summary["clean_versions"]))
    feats = build_features(history)
    with engine.connect() as conn:
        lab = pd.DataFrame(
            conn.execute(
                select(labels.c.event_id, labels.c.label, labels.c.source).where(
                    labels.c.version_id == labeled_version_id
                )
            ).all(),
            columns=["event_id", "label", "source"],
        )
    meta = history[["event_id", "student_id", "item_id", "ts"]]
    return (
        feats.merge(lab, on="event_id")
        .merge(meta, on="event_id")
        .sort_values(["ts", "event_id"], kind="mergesort")
    )


def time_split(df: pd.DataFrame, spec: ModelSpec) -> dict[str, pd.DataFrame]:
    """Train on every label; validate and test only on labels no model made (auto-labels would grade
    the model on its own homework)."""
    import pandas as pd

    from airgate.data.labeling import TRUSTED_SOURCES

    # Grouped by student and ordered by time: students are ranked by their first answer and each student's rows
    # all land in one split, so no student is both learned from and tested on, and later students are the test.
    first = df.groupby("student_id")["ts"].min().sort_values(kind="mergesort")
    rows_per = df.groupby("student_id").size().reindex(first.index).cumsum()
    n = len(df)
    in_train = set(rows_per.index[rows_per <= n * spec.splits.train])
    in_valid = set(
        rows_per.index[
            (rows_per > n * spec.splits.train) & (rows_per <= n * (spec.splits.train + spec.splits.valid))
        ]
    )
    part = df["student_id"].map(lambda s: "train" if s in in_train else "valid" if s in in_valid else "test")
    trusted = (
        df["source"].isin(TRUSTED_SOURCES) if "source" in df.columns else pd.Series(True, index=df.index)
    )
    return {
        "train": df[part == "train"],
        "valid": df[(part == "valid") & trusted],
        "test": df[(part == "test") & trusted],
    }


def history_of(engine: Engine, cfg: TrainConfig) -> pd.DataFrame:
    """The full point-in-time history of the run's labeled version (DKT reads sequences, not feature rows)."""
    from airgate.data.features import load_history

    v = datasets.get(engine, cfg.labeled_version_id)
    assert v is not None
    return load_history(engine, cfg.spec.name, list(v.summary["clean_versions"]))


def read_manifest(split: storage.StoragePath) -> SplitManifest:
    return SplitManifest.from_json(
        storage.read_text(split / "manifest.json", what="a training split's manifest")
    )


def prepare(engine: Engine, cfg: TrainConfig) -> SplitManifest:
    """Split the labeled version once per training run; later calls (retries, other workers) get the same split.

    An object store has no atomic folder rename, so the manifest is the commit: each file is written whole, the
    manifest last, and a split is there once its manifest is. A racing worker writes the same bytes (the split is
    seeded; Parquet of the same frame is the same file) and then finds the manifest; anything else would fail the
    manifest's SHA-256 check when the test split is read.
    """
    out = run_dir(cfg) / "split"
    if storage.exists(out / "manifest.json"):
        return read_manifest(out)
    df = training_frame(engine, cfg.spec, cfg.labeled_version_id)
    parts = time_split(df, cfg.spec)
    if min(len(p) for p in parts.values()) < MIN_ROWS_PER_PART or parts["train"]["label"].nunique() < 2:
        raise ValueError(f"labeled version {cfg.labeled_version_id} has too few rows to train ({len(df)})")
    manifest = _manifest_for(cfg, parts, _write_parts(out, parts))
    if storage.exists(out / "manifest.json"):  # another worker finished first; theirs is the split
        return read_manifest(out)
    storage.write_text_atomic(out / "manifest.json", manifest.to_json())
    tuning.init_storage(engine.url.render_as_string(hide_password=False))
    audit.record(
        engine,
        actor=cfg.trained_by,
        event_type="train_split",
        model=cfg.spec.name,
        entity={"training_run_id": cfg.training_run_id, "data_version": cfg.labeled_version_id},
        details={"rows": manifest.rows, "students": manifest.students, "split_hash": manifest.split_hash},
    )
    return manifest


def _write_parts(out: storage.StoragePath, parts: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Write each part as Parquet; returns the SHA-256 of each file's bytes, for the manifest."""
    hashes = {}
    for name, part in parts.items():
        buf = io.BytesIO()
        part[SPLIT_COLUMNS].to_parquet(buf, index=False)
        storage.write_bytes_atomic(out / f"{name}.parquet", buf.getvalue())
        hashes[name] = hashlib.sha256(buf.getvalue()).hexdigest()
    return hashes


def _manifest_for(cfg: TrainConfig, parts: dict[str, pd.DataFrame], hashes: dict[str, str]) -> SplitManifest:
    return SplitManifest(
        model=cfg.spec.name,
        training_run_id=cfg.training_run_id,
        labeled_version_id=cfg.labeled_version_id,
        trained_by=cfg.trained_by,
        code_version=cfg.code_version,
        spec_hash=cfg.spec.spec_hash,
        rows={k: len(v) for k, v in parts.items()},
        students={k: int(v["student_id"].nunique()) for k, v in parts.items()},
        sha256=hashes,
        split_hash=hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
    )


def load_split(cfg: TrainConfig, part: str) -> pd.DataFrame:
    """Train or validation rows. The test split is not served here: only ``read_test_once`` opens it."""
    from airgate.data import feature_store

    if part not in ("train", "valid"):
        raise ValueError(
            f"load_split serves 'train' and 'valid' only, not {part!r}: the test split is read once "
            "by finalize()"
        )
    return feature_store.read_parquet(run_dir(cfg) / "split" / f"{part}.parquet", what=f"the {part} split")


def read_test_once(engine: Engine, cfg: TrainConfig, model_uri: str) -> pd.DataFrame:
    """The one read of the test split, recorded with the model it evaluates.

    A retry of the same evaluation (same model) may read again, since the choice was fixed before the first read;
    any other model is refused, so no one can pick among models by looking at the test set.
    """
    import pandas as pd

    manifest = read_manifest(run_dir(cfg) / "split")
    # Read once, into memory: the bytes checked are the bytes evaluated.
    data = storage.read_bytes(run_dir(cfg) / "split" / "test.parquet", what="the test split")
    if hashlib.sha256(data).hexdigest() != manifest.sha256["test"]:
        raise TestSetAlreadyRead(
            f"the test split of {cfg.training_run_id} changed on disk since it was written"
        )
    _record_test_read(engine, cfg, manifest, f"{cfg.trained_by}:{model_uri}"[:128])
    return pd.read_parquet(io.BytesIO(data))


def _record_test_read(engine: Engine, cfg: TrainConfig, manifest: SplitManifest, reader: str) -> None:
    """Insert the run's one test read; the unique key refuses a second one unless it is the same reader's retry."""
    try:
        with engine.begin() as conn:
            conn.execute(
                test_set_reads.insert().values(
                    training_run_id=cfg.training_run_id,
                    model=cfg.spec.name,
                    split_hash=manifest.split_hash,
                    rows=manifest.rows["test"],
                    reader=reader,
                    read_at=utcnow(),
                )
            )
    except IntegrityError:
        with engine.connect() as conn:
            first = conn.execute(
                select(test_set_reads.c.reader).where(test_set_reads.c.training_run_id == cfg.training_run_id)
            ).scalar_one()
        if first != reader:
            raise TestSetAlreadyRead(
                f"the test split of {cfg.training_run_id} was already read to evaluate {first}; "
                f"refusing a second read for {reader}. Start a new training run instead."
            ) from None


def test_reads(engine: Engine, training_run_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                select(test_set_reads).where(test_set_reads.c.training_run_id == training_run_id)
            )
        ]
