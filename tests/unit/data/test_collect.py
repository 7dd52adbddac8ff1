"""Landing-file ingest: streamed in bounded chunks, hashed as parsed, every bad file explained, nothing blocks."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import lzma
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from airgate.core import audit, datasets
from airgate.core.warehouse import file_ledger, raw_rows
from airgate.data import clean, collect, landing_io, readers

pytestmark = pytest.mark.data

COLUMNS = ["event_id", "student_id", "item_id", "skill_id", "ts", "response_time_ms", "answer", "correct"]
HEADER = ",".join(COLUMNS) + "\n"


def _rows(n: int, tag: str = "e") -> str:
    return "".join(f"{tag}{i},s{i % 7},i000,k4,2026-09-01T10:00:00Z,{5000 + i},A,{i % 2}\n" for i in range(n))


def _landing(tmp_path: Path, files: dict[str, bytes]) -> Path:
    landing = tmp_path / "landing"
    landing.mkdir(exist_ok=True)
    for name, data in files.items():
        (landing / name).write_bytes(data)
    return landing


def _with_pattern(spec, pattern: str):  # type: ignore[no-untyped-def]
    return spec.model_copy(update={"source": spec.source.model_copy(update={"pattern": pattern})})


def _raw(engine, vid: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(
            select(raw_rows.c.row_num, raw_rows.c.content)
            .where(raw_rows.c.version_id == vid)
            .order_by(raw_rows.c.row_num)
        ).all()
    assert [n for n, _ in rows] == list(range(len(rows)))
    return [dict(c) for _, c in rows]


def _by_name(result: collect.IngestResult) -> dict[str, collect.FileOutcome]:
    return {Path(f.path).name: f for f in result.files}


def test_rows_are_written_in_bounded_chunks(engine, spec, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 16)
    written: list[int] = []
    real = collect.bulk_insert

    def spy(conn, table, rows, columns=None):  # type: ignore[no-untyped-def]
        written.append(len(rows))
        return real(conn, table, rows, columns)

    monkeypatch.setattr(collect, "bulk_insert", spy)
    landing = _landing(tmp_path, {"big.csv": (HEADER + _rows(30_000)).encode()})
    result = collect.ingest(engine, spec, landing)
    assert result.rows == sum(written) == 30_000
    assert len(written) > 10 and max(written) < 2_000  # a whole-file read would write all 30k at once


def test_the_hash_recorded_is_of_the_bytes_parsed(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    landing = _landing(tmp_path, {"b.csv": (HEADER + _rows(3, "old")).encode()})
    scanned = collect.scan(landing, "*.csv")[0]
    rewritten = (HEADER + _rows(5, "new")).encode()
    (landing / "b.csv").write_bytes(rewritten)  # a writer rewrote it in place after the scan
    outcome = collect.ingest_file(engine, spec, scanned, "airflow")
    assert outcome.status == "ingested" and outcome.rows == 5
    sha = hashlib.sha256(rewritten).hexdigest()
    with engine.connect() as conn:
        assert conn.execute(select(file_ledger.c.sha256, file_ledger.c.size_bytes)).all() == [
            (sha, len(rewritten))
        ]
    raw = datasets.get(engine, outcome.raw_version_id or "")
    assert raw is not None and raw.summary["sha256"] == sha and raw.row_count == 5
    assert [r["event_id"] for r in _raw(engine, raw.version_id)] == [f"new{i}" for i in range(5)]
    assert datasets.verify(engine, raw.version_id)
    assert collect.new_files(engine, spec.name, landing, "*.csv") == []


def test_content_is_the_row_as_strings(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ["e1", "s1", "i000", "k4", "2026-09-01T10:00:00Z", "5000", 'say "hi"\\ back\\slash', ""],
        ["e2", "s1", "i000", "k4", "2026-09-01T10:01:00Z", "5000", "tab\there, new\nline", "1"],
        ["e3", "s1", "i000", "k4", "2026-09-01T10:02:00Z", "5000", "café ✓ 日本", "0"],
        ["e4", "", "", "k4", "", "", "", ""],
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([COLUMNS, *rows])
    landing = _landing(tmp_path, {"b.csv": b"\xef\xbb\xbf" + buf.getvalue().encode()})
    result = collect.ingest(engine, spec, landing)
    assert _raw(engine, result.raw_version_ids[0]) == [dict(zip(COLUMNS, r, strict=True)) for r in rows]
    assert datasets.verify(engine, result.raw_version_ids[0])


def test_malformed_rows_keep_their_place(engine, spec, small_sim, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        readers, "CSV_BLOCK_BYTES", 1 << 12
    )  # many blocks, misfits on both sides of boundaries
    lines: list[str] = []
    expected: list[tuple[str, str | None]] = []
    for i in range(400):
        if i % 37 == 5:
            lines.append(f"m{i},s1,i000\n")
            expected.append((f"m{i}", "3 fields, header has 8"))
        elif i % 53 == 7:
            lines.append(f"x{i},s1,i000,k4,2026-09-01T10:00:00Z,5000,A,1,surplus\n")
            expected.append((f"x{i}", "9 fields, header has 8"))
        else:
            quoted = '"two\nlines"' if i % 11 == 0 else "A"
            lines.append(f"e{i},s1,i000,k4,2026-09-01T10:00:00Z,5000,{quoted},1\n")
            expected.append((f"e{i}", None))
    landing = _landing(tmp_path, {"b.csv": ("\n" + HEADER + "".join(lines) + "m,s").encode()})
    expected.append(("m", "2 fields, header has 8"))
    result = collect.ingest(engine, spec, landing)
    content = _raw(engine, result.raw_version_ids[0])
    assert [(r["event_id"], r.get(collect.MALFORMED)) for r in content] == expected
    assert content[1]["answer"] == "A" and content[0]["answer"] == "two\nlines"
    assert datasets.verify(engine, result.raw_version_ids[0])
    outcome = clean.clean_pending(engine, spec).versions[0]
    bad = sum(m is not None for _, m in expected)
    assert outcome.rows_in == 401 and outcome.reasons.get("malformed_row") == bad


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        (
            "dup.csv",
            b"event_id,student_id,item_id,skill_id,ts,response_time_ms,answer,correct,answer\n",
            "appears",
        ),
        (
            "zipped.csv",
            gzip.compress((HEADER + _rows(2)).encode()),
            "gzip-compressed file named .csv: rename",
        ),
        (
            "latin.csv",
            (HEADER + "e1,s1,i000,k4,2026-09-01T10:00:00Z,5000,é,1\n").encode("latin-1"),
            "byte 112",
        ),
        ("fake.csv.gz", (HEADER + _rows(2)).encode(), "named .gz but not gzip-compressed"),
        ("cut.csv.gz", gzip.compress((HEADER + _rows(900)).encode())[:-40], "corrupt gzip data"),
        ("packed.csv", b"PK\x03\x04" + bytes(40), "a zip archive: unpack it"),
    ],
)
def test_misleading_files_are_rejected_with_the_fix(engine, spec, tmp_path: Path, name, data, reason) -> None:  # type: ignore[no-untyped-def]
    landing = _landing(tmp_path, {"good.csv": (HEADER + _rows(2)).encode(), name: data})
    status = _by_name(collect.ingest(engine, _with_pattern(spec, "*.csv*"), landing))
    assert status["good.csv"].status == "ingested"
    assert status[name].status == "rejected" and reason in (status[name].error or ""), status[name].error
    if name == "dup.csv":
        assert status[name].error == "column 'answer' appears twice in the header: rename or drop one of them"


def test_gzip_csv_is_read_and_hashed_as_landed(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    packed = gzip.compress((HEADER + _rows(50)).encode())
    xz = lzma.compress((HEADER + _rows(7, "x")).encode())
    landing = _landing(tmp_path, {"b.csv.gz": packed, "c.csv.xz": xz})
    result = collect.ingest(engine, _with_pattern(spec, "*.csv.*"), landing)
    assert [(Path(f.path).name, f.rows) for f in result.files] == [("b.csv.gz", 50), ("c.csv.xz", 7)]
    raw = datasets.get(engine, result.raw_version_ids[0])
    assert raw is not None and raw.summary["sha256"] == hashlib.sha256(packed).hexdigest()
    assert raw.summary["format"] == "csv+gzip"
    assert _raw(engine, raw.version_id)[49]["event_id"] == "e49"


def test_parquet_binary_is_decoded_and_undecodable_values_are_marked(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ts = pa.array([1_788_256_800_000_000] * 3, pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "event_id": pa.array([b"e1", b"e2", b"e3"], pa.binary()),
            "student_id": ["s1", "s1", None],
            "item_id": pa.array(["i000"] * 3).dictionary_encode(),
            "skill_id": ["k4"] * 3,
            "ts": ts,
            "response_time_ms": pa.array([5000, 6000, None], pa.int64()),
            "answer": pa.array([b"caf\xc3\xa9", b"\xff\xfeA", b"B"], pa.binary()),
            "correct": pa.array([1, 0, None], pa.int8()),
        }
    )
    landing = tmp_path / "landing"
    landing.mkdir()
    pq.write_table(table, landing / "b.parquet")
    result = collect.ingest(engine, _with_pattern(spec, "*.parquet"), landing)
    rows = _raw(engine, result.raw_version_ids[0])
    assert rows[0] == {
        "event_id": "e1",
        "student_id": "s1",
        "item_id": "i000",
        "skill_id": "k4",
        "ts": "2026-09-01T10:00:00+00:00",
        "response_time_ms": "5000",
        "answer": "café",
        "correct": "1",
    }
    assert rows[1][collect.UNDECODABLE] == "answer" and "b'" not in rows[1]["answer"]
    assert collect.UNDECODABLE not in rows[0] and rows[2]["correct"] == rows[2]["student_id"] == ""
    assert datasets.verify(engine, result.raw_version_ids[0])


def _refuse(monkeypatch, name: str) -> None:  # type: ignore[no-untyped-def]
    """Make one landing file unreadable: chmod where that works, else (as root) a refusing open."""
    real = landing_io.open_binary

    def refusing(location):  # type: ignore[no-untyped-def]
        if str(location).endswith(name):
            raise PermissionError(13, "Permission denied", str(location))
        return real(location)

    monkeypatch.setattr(landing_io, "open_binary", refusing)


def test_an_unreadable_file_is_rejected_once_and_the_others_go_on(
    engine, spec, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    landing = _landing(
        tmp_path,
        {"a.csv": (HEADER + _rows(3, "a")).encode(), "locked.csv": (HEADER + _rows(2, "l")).encode()},
    )
    locked = landing / "locked.csv"
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root ignores the mode
        _refuse(monkeypatch, "locked.csv")
    sensed = [Path(f.path).name for f in collect.new_files(engine, spec.name, landing, "*.csv")]
    assert sensed == ["a.csv", "locked.csv"]  # the sensor still fires; nothing raised
    status = _by_name(collect.ingest(engine, spec, landing))
    assert status["a.csv"].status == "ingested" and status["a.csv"].rows == 3
    assert status["locked.csv"].status == "rejected" and "Permission denied" in (
        status["locked.csv"].error or ""
    )
    assert [e["entity"]["path"] for e in audit.events(engine, event_type="ingest_rejected")] == [str(locked)]
    assert collect.ingest(engine, spec, landing).files == []  # not retried on every poll
    locked.chmod(
        0o644
    )  # fixed: readable now; the chmod changes the inode's ctime, which the quick check sees
    monkeypatch.undo()
    st = locked.stat()  # timestamps are coarse (a few ms): move them on, as the seconds a person takes would
    os.utime(locked, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = _by_name(collect.ingest(engine, spec, landing))
    assert again["locked.csv"].status == "ingested" and again["locked.csv"].rows == 2


def test_a_file_rejected_midway_leaves_no_rows_and_is_hashed_whole(
    engine, spec, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(readers, "HEADER_MAX_BYTES", 1 << 10)
    good = (HEADER + _rows(2_000)).encode()
    data = good + b"e9,s1,i000,k4,2026-09-01T10:00:00Z,5000,\xff,1\n" + _rows(500, "z").encode()
    landing = _landing(tmp_path, {"late.csv": data})
    status = _by_name(collect.ingest(engine, spec, landing))
    assert status["late.csv"].error == f"not UTF-8 (byte {len(good) + 40}): save the file as UTF-8"
    with engine.connect() as conn:
        assert (
            conn.execute(select(raw_rows.c.row_num)).first() is None
        )  # the chunks written so far rolled back
        assert conn.execute(select(file_ledger.c.sha256)).scalar() == hashlib.sha256(data).hexdigest()
    assert collect.ingest(engine, spec, landing).files == []


def test_a_poll_reads_only_files_whose_size_or_time_changed(
    engine, spec, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The quick check: a zone that keeps its history costs a listing per poll, not a read of every byte; a file
    rewritten in place (new size or time) is read again and ingested under its new content."""
    landing = _landing(
        tmp_path, {"a.csv": (HEADER + _rows(3, "a")).encode(), "b.csv": (HEADER + _rows(2, "b")).encode()}
    )
    collect.ingest(engine, spec, landing)
    opened: list[str] = []
    real = landing_io.open_binary

    def counting(location):  # type: ignore[no-untyped-def]
        opened.append(Path(str(location)).name)
        return real(location)

    monkeypatch.setattr(landing_io, "open_binary", counting)
    assert collect.new_files(engine, spec.name, landing, "*.csv") == [] and opened == []
    (landing / "b.csv").write_text(HEADER + _rows(4, "b"))
    st = (landing / "b.csv").stat()
    os.utime(landing / "b.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert [Path(f.path).name for f in collect.new_files(engine, spec.name, landing, "*.csv")] == ["b.csv"]
    assert opened == ["b.csv"]
    status = _by_name(collect.ingest(engine, spec, landing))
    assert status["b.csv"].status == "ingested" and status["b.csv"].rows == 4


def test_a_rename_the_pattern_would_not_match_says_so(engine, spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The shipped pattern is *.csv: renamed as advised, the file would never be seen again, so the rejection
    also names the pattern to change."""
    landing = _landing(tmp_path, {"zipped.csv": gzip.compress((HEADER + _rows(2)).encode())})
    (rejected,) = collect.ingest(engine, spec, landing).files
    assert rejected.error == (
        "gzip-compressed file named .csv: rename it .csv.gz, and change the spec's source.pattern: '*.csv' does "
        "not match zipped.csv.gz"
    )
    (tmp_path / "b").mkdir()
    (matching,) = collect.ingest(
        engine, _with_pattern(spec, "*.csv*"), _landing(tmp_path / "b", {"z.csv": gzip.compress(b"x")})
    ).files
    assert matching.error == "gzip-compressed file named .csv: rename it .csv.gz"
