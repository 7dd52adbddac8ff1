"""The storage layer: every file one task writes and another reads goes through one root (AIRGATE_STORAGE_URL).

The functions are checked on a local root (file://) and on fsspec's in-process store (memory://, which also stands
in for an object store: no rename, no local path). Then the stages run with a memory:// root and an AIRGATE_HOME
that holds nothing, and the DAGs run under dag.test() with a file:// root elsewhere: a stage that read or wrote a
local path instead of storage would fail, or leave its files in the wrong place.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from airgate.core import settings, storage
from tests.helpers import REPO_ROOT

MODEL = "knowledge_tracing"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's AIRGATE_HOME, empty; the storage settings unset."""
    h = tmp_path / "home"
    monkeypatch.setenv("AIRGATE_HOME", str(h))
    monkeypatch.delenv(storage.URL_ENV, raising=False)
    monkeypatch.delenv(storage.CONN_ENV, raising=False)
    return h


def _memory_url() -> str:
    return f"memory://t{uuid.uuid4().hex[:12]}/airgate"


@pytest.fixture(params=["file", "memory"])
def root_url(
    request: pytest.FixtureRequest, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A storage root of each kind: a local folder (not AIRGATE_HOME), and fsspec's in-process store."""
    url = f"file://{tmp_path / 'store'}" if request.param == "file" else _memory_url()
    monkeypatch.setenv(storage.URL_ENV, url)
    return url


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_the_default_root_is_airgate_home_and_the_setting_moves_it(home: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert storage.url() == f"file://{home}" and storage.is_local(storage.root())
    assert storage.as_string(settings.runs_dir()) == str(home / "runs")
    assert storage.as_string(settings.resolve_path("catalog/items.csv")) == str(
        home / "catalog" / "items.csv"
    )
    url = _memory_url()
    monkeypatch.setenv(storage.URL_ENV, url + "/")
    assert storage.url() == url and str(settings.runs_dir()) == f"{url}/runs"
    assert str(settings.resolve_location("landing/m")) == f"{url}/landing/m"
    monkeypatch.setenv(storage.URL_ENV, "/srv/airgate")
    with pytest.raises(storage.StorageError, match="AIRGATE_STORAGE_URL='/srv/airgate' is not a URL"):
        storage.root()


def test_spec_paths_resolve_by_one_rule(root_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # relative: under the root
    assert str(storage.location("catalog/items.csv")) == f"{root_url}/catalog/items.csv"
    assert str(storage.location(Path("runs") / "tr-1")) == f"{root_url}/runs/tr-1"
    # a URI stays what it is, whatever the root
    assert str(storage.location("memory://elsewhere/landing")) == "memory://elsewhere/landing"
    # a plain absolute path is a local file, written down as that plain path
    local = storage.location(str(tmp_path / "x.csv"))
    assert local.protocol == "file" and storage.as_string(local) == str(tmp_path / "x.csv")
    # variables are expanded, a location passes through, and a relative path cannot climb out of the root
    monkeypatch.setenv("AIRGATE_TEST_MODEL", "m1")
    assert str(storage.location("landing/$AIRGATE_TEST_MODEL")) == f"{root_url}/landing/m1"
    here = storage.location("a/b")
    assert storage.location(here) is here
    with pytest.raises(storage.StorageError, match="climbs out of the storage root"):
        storage.location("../outside.csv")
    # what is written down reads back as the same place
    assert storage.location(storage.as_string(here)) == here


def test_write_read_and_missing_files_on_each_backend(root_url: str, home: Path) -> None:
    import pandas as pd

    from airgate.data.feature_store import read_parquet, write_parquet

    target = storage.write_text_atomic("runs/tr-1/result.json", json.dumps({"auc": 0.7}))
    assert storage.exists(target) and storage.is_file("runs/tr-1/result.json")
    assert json.loads(storage.read_text("runs/tr-1/result.json")) == {"auc": 0.7}
    storage.write_bytes_atomic("runs/tr-1/result.json", b"{}")  # replaced whole
    assert storage.read_bytes(storage.as_string(target)) == b"{}"
    frame = pd.DataFrame({"event_id": [f"e{i}" for i in range(10)], "x": range(10)})
    write_parquet(frame, "runs/features/shard.parquet", row_group=4)
    pd.testing.assert_frame_equal(read_parquet("runs/features/shard.parquet"), frame)
    assert list(read_parquet("runs/features/shard.parquet", columns=["x"]).columns) == ["x"]
    with pytest.raises(storage.StorageFileNotFound) as err:
        storage.read_text("runs/tr-1/nope.json", what="a candidate result")
    message = str(err.value)
    assert storage.as_string("runs/tr-1/nope.json") in message and "a candidate result" in message
    assert storage.URL_ENV in message
    assert isinstance(err.value, FileNotFoundError)
    assert not _files_under(home), "storage wrote into AIRGATE_HOME although the root is elsewhere"


def test_memory_object_storage_paths_work_like_any_store(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Airflow registers no filesystem for memory://; the storage layer attaches fsspec's, so ObjectStoragePath's
    own open(), stat() and glob() work on it (what the stages and the landing-zone scan use)."""
    from airflow.sdk import ObjectStoragePath

    url = _memory_url()
    monkeypatch.setenv(storage.URL_ENV, url)
    storage.write_text_atomic("landing/a.csv", "event_id\n1\n")
    p = ObjectStoragePath(f"{url}/landing/a.csv")
    with p.open("rb") as fh:
        assert fh.read() == b"event_id\n1\n"
    assert p.stat().st_size == len(b"event_id\n1\n") and p.parent.is_dir()
    assert [q.name for q in storage.location("landing").glob("*.csv")] == ["a.csv"]
    assert storage.as_string(p) == f"{url}/landing/a.csv"


def test_a_failed_local_write_leaves_the_old_file_and_no_temp_file(home: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    storage.write_text_atomic("runs/plan.json", "old")

    def broken_rename(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        storage.write_text_atomic("runs/plan.json", "new")
    monkeypatch.undo()
    assert (home / "runs" / "plan.json").read_text() == "old"
    assert [p.name for p in (home / "runs").iterdir()] == ["plan.json"]


def test_a_reader_sees_the_old_file_or_the_new_one_never_half(root_url: str) -> None:
    """A writer replaces a 2 MB file over and over while a reader reads it: every read is one whole version."""
    versions = [bytes([i]) * (2 << 20) for i in range(2)]
    storage.write_bytes_atomic("runs/big.bin", versions[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(storage.read_bytes("runs/big.bin"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(40):
            storage.write_bytes_atomic("runs/big.bin", versions[i % 2])
    finally:
        stop.set()
        t.join(timeout=30)
    assert seen and all(s in versions for s in seen)


def test_files_for_libraries_that_need_local_paths(root_url: str, home: Path, tmp_path: Path) -> None:
    local = tmp_path / "made-by-a-library"
    (local / "site" / "static").mkdir(parents=True)
    (local / "site" / "index.html").write_text("<html>docs</html>")
    (local / "site" / "static" / "app.js").write_text("1")
    (local / "plot.png").write_bytes(b"\x89PNG")
    stored = storage.upload_file(local / "plot.png", "runs/tr-1/pareto.png")
    with storage.local_copy(stored) as copy:
        assert copy.read_bytes() == b"\x89PNG" and copy.is_file()
    assert not copy.exists()  # the scratch copy is gone afterwards
    storage.upload_tree(local / "site", "gx/m")
    assert storage.read_text("gx/m/static/app.js") == "1"

    down = tmp_path / "down"
    state = storage.download_tree("gx/m", down)
    assert (down / "index.html").read_text() == "<html>docs</html>" and set(state) == {
        "index.html",
        "static/app.js",
    }
    # only what changed goes back up
    (down / "static" / "app.js").write_text("22")
    storage.write_text_atomic("gx/m/index.html", "changed meanwhile in storage")
    storage.upload_tree(down, "gx/m", unchanged=state)
    assert storage.read_text("gx/m/static/app.js") == "22"
    assert storage.read_text("gx/m/index.html") == "changed meanwhile in storage"

    assert storage.download_tree("gx/none", tmp_path / "none", missing_ok=True) == {}
    with pytest.raises(storage.StorageFileNotFound):
        storage.download_tree("gx/none", tmp_path / "none")
    assert not _files_under(home)


def test_storage_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import airgate.core.storage; heavy = {'pandas', 'pyarrow', 'fsspec', 'airflow', 'sqlalchemy'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


# ------------------------------------------------------------------------------------ the stages, shared nothing


def test_every_stage_reads_and_writes_through_an_object_store(  # type: ignore[no-untyped-def]
    sqlite_engine, spec, mlflow_cfg, home: Path, tmp_path: Path, monkeypatch
) -> None:
    """The whole lifecycle on a memory:// root, with an empty AIRGATE_HOME: the catalog, roster, landing zone and
    label files exist only in the store, so a stage that looked on the local disk would fail; everything the stages
    write (splits, results, plots, evidence, GX, feature shards, plans, drift reports) must land in the store."""
    from airgate.core import datasets
    from airgate.data import checks, clean, collect, feature_store, labeling
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog, write_late_grades
    from airgate.governance import evidence
    from airgate.model import gates, training
    from airgate.serving import monitoring, scoring
    from tests.helpers import approve

    url = _memory_url()
    monkeypatch.setenv(storage.URL_ENV, url)
    engine = sqlite_engine
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40, ungraded_rate=0.1))
    write_catalog(sim, settings.resolve_path(spec.cleaning.item_catalog))
    for b in range(2):
        sim.write_batch(
            b,
            settings.resolve_location(spec.source.path),
            tmp_path / "oracle",
            roster_path=settings.resolve_path(spec.slices.roster),
        )
    write_late_grades(sim.batch(0), settings.resolve_path(spec.label_policy.late_labels_path), fraction=0.5)

    ingested = collect.ingest(engine, spec, settings.resolve_location(spec.source.path))
    assert len(ingested.raw_version_ids) == 2 and all(
        f.path.startswith(f"{url}/landing/") for f in ingested.files
    )
    clean.clean_pending(engine, spec)
    checked = checks.validate_pending(engine, spec)
    assert checked and all(o.status != "fail" for o in checked)
    assert all(o.results_path.startswith(url) and str(o.docs_path).startswith(url) for o in checked)
    files = labeling.ingest_label_files(
        engine, spec, settings.resolve_path(spec.label_policy.late_labels_path), "late"
    )
    assert files and files[0].accepted > 0 and files[0].path.startswith(url)
    labeled = labeling.label_pending(engine, spec).labeled_version_id
    assert labeled is not None
    clean_version = datasets.latest(engine, spec.name, "clean")
    assert clean_version is not None
    fs = feature_store.materialize(engine, spec, clean_version.version_id, settings.runs_dir())
    assert fs.shards and all(s.path.startswith(f"{url}/runs/features/") for s in fs.shards)

    cfg = training.TrainConfig(
        spec, labeled, "tr-store", "trainer", mlflow_cfg, settings.runs_dir(), "abc123"
    )
    result = training.train(engine, cfg)
    assert result.test_predictions.startswith(url) and str(result.pareto["plot"]).startswith(url)
    report = gates.validate(engine, spec, mlflow_cfg, "tr-store", settings.runs_dir())
    assert report.approvable, report.failures
    assert str(report.evidence["drift"]["html_path"]).startswith(f"{url}/runs/tr-store/drift/")
    served = evidence.artifact_paths(report.evidence, settings.runs_dir())
    assert set(served) == {"gate_report.html", "pareto.png", "drift.html"}
    assert "evidence" in storage.read_text(served["gate_report.html"]).lower()
    docs = evidence.data_docs_file(engine, spec.name, "index.html")
    assert docs is not None and str(docs).startswith(url) and "<html" in storage.read_text(docs).lower()
    assert evidence.data_docs_file(engine, spec.name, "../../../validations") is None

    from airgate.governance import registration

    request_id = registration.register_and_request(engine, spec, mlflow_cfg, "tr-store")[
        "approval_request_id"
    ]
    approve(engine, spec, mlflow_cfg, request_id)
    done = scoring.score(engine, scoring.ScoreConfig(spec, mlflow_cfg, "2026-09-01", "sr-store"))
    assert done.rows_scored == fs.rows
    assert storage.exists(scoring.plan_path(settings.runs_dir(), "sr-store"))
    drift = monitoring.check_drift(engine, spec, mlflow_cfg, "sr-store", settings.runs_dir())
    assert drift.status != "not_evaluated", drift.summary
    assert str(drift.report_path).startswith(f"{url}/runs/monitoring/sr-store/")

    assert not _files_under(home), f"a stage wrote into AIRGATE_HOME: {_files_under(home)}"


@pytest.mark.e2e
def test_the_dags_share_nothing_but_the_databases_and_the_store(  # type: ignore[no-untyped-def]
    airflow_db, home: Path, tmp_path: Path, monkeypatch
) -> None:
    """collect -> clean -> label -> train -> approval through the plugin -> score under dag.test(), with the
    store in its own folder and an empty AIRGATE_HOME: every file a task hands another is under the store."""
    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy import func, select

    from airgate.core import registry
    from airgate.core.spec import find_spec
    from airgate.core.warehouse import make_engine, predictions
    from airgate.dev.simulator import SimConfig, Simulator, write_catalog
    from airgate.governance import promotion
    from tests.e2e.test_dag_test import approve_via_api, run
    from tests.helpers import migrated_sqlite

    store = tmp_path / "store"
    monkeypatch.setenv(storage.URL_ENV, f"file://{store}")
    (tmp_path / "db").mkdir()
    wh = migrated_sqlite(tmp_path / "db" / "warehouse.db")
    monkeypatch.setenv("AIRFLOW_CONN_AIRGATE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(wh)}))
    cfg = registry.MlflowConfig.under(tmp_path / "mlflow")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRGATE_MLFLOW",
        json.dumps(
            {
                "conn_type": "generic",
                "extra": {"tracking_uri": cfg.tracking_uri, "artifact_root": cfg.artifact_root},
            }
        ),
    )
    spec = find_spec(MODEL)
    assert spec.cleaning.item_catalog is not None and spec.slices.roster is not None
    sim = Simulator(SimConfig(students_per_batch=120, events_per_student=40))
    write_catalog(sim, settings.resolve_path(spec.cleaning.item_catalog))
    for b in range(2):
        sim.write_batch(
            b,
            settings.resolve_location(spec.source.path),
            tmp_path / "oracle",
            roster_path=settings.resolve_path(spec.slices.roster),
        )
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors
    env = {"dags": bag.dags}

    for stage in ("collect", "clean", "label", "train"):
        run(env, stage)
    engine = make_engine(f"sqlite:///{wh}")
    req = promotion.list_requests(engine, model=MODEL, status="pending")[0]
    approve_via_api(engine, req)
    run(env, "score")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar_one() > 0

    runs = store / "runs"
    assert (runs / req["training_run_id"] / "split" / "manifest.json").is_file()
    assert (runs / req["training_run_id"] / "gate_report.html").is_file()
    assert list((runs / req["training_run_id"] / "candidates").glob("*.json"))
    assert list((runs / "features" / MODEL).rglob("manifest.json"))
    assert list((runs / "scoring").rglob("plan.json")) and list((runs / "monitoring").rglob("drift.html"))
    assert list((store / "validations" / MODEL).rglob("results.json")) and (store / "gx" / MODEL).is_dir()
    assert not _files_under(home), f"a task wrote into AIRGATE_HOME: {_files_under(home)}"
