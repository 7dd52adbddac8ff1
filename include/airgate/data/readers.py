"""Streaming readers of landing files: CSV and Parquet in bounded chunks of raw rows, ready for the bulk path.

Memory follows the chunk size, never the file size: CSV is parsed by pyarrow's streaming reader in blocks of
``CSV_BLOCK_BYTES`` (every column a string, exactly as written), Parquet one record batch at a time. Each chunk comes
out as (row number, content JSON) pairs; the content is the JSON object column -> string ("" for empty) that
cleaning reads, built with vectorised string ops and ``json.dumps`` only for rows with characters that need escaping.

A row whose field count differs from the header keeps its place (``row_num`` is its position among the file's
records) and is marked with ``MALFORMED`` so cleaning quarantines it; a Parquet value that is not UTF-8 is marked
with ``UNDECODABLE`` (naming the columns) instead of becoming a ``b'...'`` repr.
"""

from __future__ import annotations

import csv
import io
import queue
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from airgate.data.landing_io import BadFile, HashingReader, Utf8Checked, text_stream
from airgate.data.privacy import Pseudonymizer
from airgate.data.rowjson import canonical_text, content_text, encode, strings_of

MALFORMED = "_malformed"  # set in a raw row's content when the row did not have the header's shape
UNDECODABLE = "_undecodable"  # set (to the column names) when a Parquet BINARY value is not UTF-8
CSV_BLOCK_BYTES = 2 << 20
PARQUET_BATCH_ROWS = 65_536
HEADER_MAX_BYTES = 1 << 20
READER_VERSION = "stream-1"  # part of the raw version's digest: a change in how bytes become rows changes it


@dataclass(frozen=True)
class Chunk:
    """Raw rows of one block, in file order: their positions, their content JSON, their canonical lines."""

    row_nums: np.ndarray
    contents: pa.Array
    canonical: pa.Array

    def __len__(self) -> int:
        return len(self.row_nums)

    def tuples(self, version_id: str) -> list[tuple[str, int, str]]:
        return list(zip(repeat(version_id), self.row_nums.tolist(), self.contents.to_pylist(), strict=False))

    def canonical_bytes(self) -> memoryview:
        """The canonical lines back to back (the string array's data buffer), for the running content hash."""
        arr = self.canonical
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
        data = arr.buffers()[2]
        return memoryview(data)[int(offsets[0]) : int(offsets[-1])] if data is not None else memoryview(b"")


def _merged(a: Chunk, nums: list[int], rows: list[dict[str, str]]) -> Chunk:
    """A chunk with some rows added (built one by one), sorted back into file order."""
    if not nums:
        return a
    all_nums = np.concatenate([a.row_nums, np.asarray(nums, dtype=np.int64)])
    order = pa.array(np.argsort(all_nums, kind="stable"))
    contents = pa.array([content_text(r) for r in rows], pa.string())
    canonical = pa.array([canonical_text(n, r) for n, r in zip(nums, rows, strict=True)], pa.string())
    return Chunk(
        all_nums[order.to_numpy()],
        pa.concat_arrays([a.contents, contents]).take(order),
        pa.concat_arrays([a.canonical, canonical]).take(order),
    )


@dataclass
class SourceStats:
    rows: int = 0
    malformed_rows: int = 0
    undecodable_rows: int = 0


class Source(Protocol):
    """An open landing file: its header, its rows chunk by chunk, and the hash of the bytes that were parsed."""

    header: list[str]
    format: str
    known_sha256: str | None  # known before parsing (Parquet is copied first); CSV learns it at the end
    stats: SourceStats

    def chunks(self) -> Iterator[Chunk]: ...

    def finish(self) -> tuple[str, int]: ...


def check_header(header: list[str], expected: list[str]) -> None:
    """A repeated column name would silently keep one of the two values: refuse the file instead."""
    repeated = [c for c, n in Counter(header).items() if n > 1]
    if repeated:
        raise BadFile(f"column '{repeated[0]}' appears twice in the header: rename or drop one of them")
    missing = [c for c in expected if c not in header]
    if missing:
        raise BadFile(f"missing columns {missing}; found {header}")


def _read_header(text: Utf8Checked) -> list[str]:
    """The header's fields, read from the first bytes; leading BOM and blank lines are dropped here so the
    streaming parser's record numbers count from the header."""
    head = text.peek(HEADER_MAX_BYTES)
    if not head.strip():
        raise BadFile("empty file")
    skip = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    while head[skip : skip + 1] in (b"\r", b"\n"):
        skip += 1
    text.read(skip)
    line, newline, _ = head[skip:].partition(b"\n")
    if not newline and len(head) == HEADER_MAX_BYTES:
        raise BadFile(f"no end of the header line in the first {HEADER_MAX_BYTES} bytes: is this a CSV file?")
    decoded = line.decode("utf-8").rstrip("\r")
    if decoded.count('"') % 2:
        raise BadFile("the header line has an unclosed quote: a header must fit on one line")
    return next(csv.reader([decoded]))


@dataclass
class _Misfits:
    """Rows the parser skipped for their field count, by position, until their place in the output comes up."""

    positions: list[int] = field(default_factory=list)
    rows: list[tuple[int, str, int]] = field(default_factory=list)  # (position, text, fields)
    flushed: int = 0
    unplaced: int = 0

    def handler(self, row: Any) -> str:
        if row.number is None:
            self.unplaced += 1
        else:
            self.positions.append(row.number - 2)  # 1-based, the header is record 1
            self.rows.append((row.number - 2, row.text, row.actual_columns))
        return "skip"

    def place(self, start: int, n: int) -> tuple[np.ndarray, int]:
        """Positions of the next ``n`` well-formed rows from ``start`` (skipping misfits), and the next start."""
        end, j = start + n, self.flushed
        while j < len(self.positions) and self.positions[j] < end:
            end, j = end + 1, j + 1
        taken = np.ones(end - start, dtype=bool)
        taken[np.asarray(self.positions[self.flushed : j], dtype=np.int64) - start] = False
        return np.arange(start, end, dtype=np.int64)[taken], end

    def take(self, below: int | None) -> list[tuple[int, str, int]]:
        j = len(self.rows) if below is None else self.flushed
        while below is not None and j < len(self.rows) and self.rows[j][0] < below:
            j += 1
        out, self.flushed = self.rows[self.flushed : j], j
        return out


def _malformed_row(header: list[str], text: str, fields: int) -> dict[str, str]:
    values = next(csv.reader(io.StringIO(text, newline="")), [])
    row = {h: values[i] if i < len(values) else "" for i, h in enumerate(header)}
    row[MALFORMED] = f"{fields} fields, header has {len(header)}"
    return row


class CsvSource:
    """A CSV (optionally gzip/bzip2/xz) read block by block through the hashing reader."""

    known_sha256: str | None = None

    def __init__(
        self, raw: HashingReader, name: str, expected: list[str], pseudo: Pseudonymizer | None = None
    ) -> None:
        self._raw = raw
        self._pseudo = pseudo
        text, self.format = text_stream(raw, name)
        self.header = _read_header(text)
        check_header(self.header, expected)
        self.stats = SourceStats()
        self._misfits = _Misfits()
        try:
            self._reader = pacsv.open_csv(
                text,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=self._misfits.handler
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.header},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,  # Utf8Checked already did, with the byte offset
                ),
            )
        except pa.ArrowInvalid as exc:
            raise BadFile(f"unreadable CSV: {exc}") from exc
        if self._reader.schema.names != self.header:
            raise BadFile(f"the header reads as {self._reader.schema.names}, expected {self.header}")

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._reader
        except pa.ArrowInvalid as exc:  # e.g. a record longer than a block
            raise BadFile(f"unreadable CSV after row {self.stats.rows}: {exc}") from exc

    def _with_misfits(self, chunk: Chunk, below: int | None) -> Chunk:
        rows = self._misfits.take(below)
        self.stats.malformed_rows += len(rows)
        self.stats.rows += len(chunk) + len(rows)
        misfits = [_malformed_row(self.header, t, n) for _, t, n in rows]
        if self._pseudo is not None and misfits:
            misfits = self._pseudo.apply_rows(misfits)
        return _merged(chunk, [p for p, _, _ in rows], misfits)

    def chunks(self) -> Iterator[Chunk]:
        start = 0
        for batch in self._batches():
            nums, start = self._misfits.place(start, batch.num_rows)
            enc = encode(self.header, pseudonymized(self._pseudo, self.header, list(batch.columns)), nums, {})
            yield self._with_misfits(Chunk(nums, enc.contents, enc.canonical), start)
        empty = pa.array([], pa.string())
        rest = self._with_misfits(Chunk(np.zeros(0, dtype=np.int64), empty, empty), None)
        if rest.row_nums.tolist() != list(range(start, start + len(rest))):
            raise BadFile(f"malformed rows out of place at {rest.row_nums[:5]}: please report this file")
        if len(rest):
            yield rest
        if self._misfits.unplaced:
            raise BadFile(f"{self._misfits.unplaced} malformed rows whose position is unknown")

    def finish(self) -> tuple[str, int]:
        return self._raw.finish()


class ParquetSource:
    """A Parquet file, copied (and hashed) to a local temporary file first: Parquet needs random access, and the
    copy is what is parsed, so the hash is of exactly those bytes even if the landing file changes meanwhile."""

    format = "parquet"

    def __init__(self, raw: HashingReader, expected: list[str], pseudo: Pseudonymizer | None = None) -> None:
        self._pseudo = pseudo
        self._tmp = tempfile.TemporaryFile(prefix="airgate-landing-")  # noqa: SIM115 - closed in close()
        shutil.copyfileobj(raw, self._tmp, 1 << 20)
        self._sha = raw.finish()
        self.known_sha256: str | None = self._sha[0]
        self.stats = SourceStats()
        if self._sha[1] == 0:
            raise BadFile("empty file")
        try:
            self._file = pq.ParquetFile(self._tmp)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise BadFile(f"corrupt Parquet: {exc}") from exc
        self.header = list(self._file.schema_arrow.names)
        check_header(self.header, expected)

    def chunks(self) -> Iterator[Chunk]:
        batches = self._file.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise BadFile(f"corrupt Parquet after row {self.stats.rows}: {exc}") from exc
            yield self._chunk(batch)

    def _chunk(self, batch: pa.RecordBatch) -> Chunk:
        columns, marks = [], [""] * batch.num_rows
        for name, arr in zip(self.header, batch.columns, strict=True):
            strings, bad = strings_of(arr)
            columns.append(strings)
            for i in bad:
                marks[i] = f"{marks[i]},{name}" if marks[i] else name
        extra = {i: {UNDECODABLE: m} for i, m in enumerate(marks) if m}
        self.stats.undecodable_rows += len(extra)
        start, self.stats.rows = self.stats.rows, self.stats.rows + batch.num_rows
        nums = np.arange(start, self.stats.rows, dtype=np.int64)
        enc = encode(self.header, pseudonymized(self._pseudo, self.header, columns), nums, extra)
        return Chunk(nums, enc.contents, enc.canonical)

    def finish(self) -> tuple[str, int]:
        return self._sha

    def close(self) -> None:
        self._tmp.close()


def is_parquet(name: str) -> bool:
    return name.lower().endswith((".parquet", ".pq"))


def pseudonymized(pseudo: Pseudonymizer | None, header: list[str], columns: list[Any]) -> list[Any]:
    """A chunk's string columns with the ``privacy.pseudonymize`` ones replaced, before anything is stored."""
    if pseudo is None:
        return columns
    table = pseudo.apply_table(pa.Table.from_arrays(columns, names=header))
    return [c.combine_chunks() for c in table.columns]


def open_source(
    raw: HashingReader, name: str, expected: list[str], pseudo: Pseudonymizer | None = None
) -> Source:
    """The reader for a landing file, by its name (the content's first bytes are checked against it). With
    ``pseudo``, the columns it names are pseudonymised in every chunk, malformed rows included."""
    if is_parquet(name):
        return ParquetSource(raw, expected, pseudo)
    return CsvSource(raw, name, expected, pseudo)


_END = object()


def _produce(items: Iterator[Chunk], out: queue.Queue[Any], stop: threading.Event) -> None:
    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in items:
            if not put(item):
                return
        put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
        put(exc)


@contextmanager
def read_ahead(items: Iterator[Chunk], depth: int = 1) -> Iterator[Iterator[Chunk]]:
    """The chunks, parsed and encoded one step ahead in a thread, so that reading the next overlaps writing this
    one (the database drivers release the GIL while they wait). At most ``depth`` chunks wait, so memory stays
    bounded; an error in the reader is raised here, and leaving the block stops the reader before it returns.
    ``depth`` 0 reads in the caller's thread."""
    if depth == 0:
        yield items
        return
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(
        target=_produce, args=(items, out, stop), name="airgate-read-ahead", daemon=True
    )
    worker.start()

    def consume() -> Iterator[Chunk]:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        worker.join()
