"""Byte streams under the landing-file readers: hash what is read, detect compression, check UTF-8 as it flows.

The ledger's SHA-256 must be of the very bytes that were parsed, not of a separate read that a writer may have
raced, so the file is read once, through ``HashingReader``, and every byte handed to a parser (or skipped when a
file is rejected part-way, see ``finish``) goes through the hash. Compression is decided by the first bytes, not the
name alone: a gzip file named ``.csv`` is refused with the rename that fixes it instead of a puzzling "not UTF-8".
UTF-8 is checked incrementally (``Utf8Checked``) so a bad byte is reported with its offset without holding the file.
"""

from __future__ import annotations

import abc
import bz2
import codecs
import gzip
import hashlib
import io
import lzma
import zlib
from dataclasses import dataclass
from typing import IO, Any

from airgate.core import storage


class BadFile(ValueError):
    """A landing file that cannot be ingested; the message says why and what fixes it. ``rename_to``: the suffix
    the message tells the user to give the file (collect checks the spec's pattern would then still match it)."""

    def __init__(self, message: str, rename_to: str | None = None) -> None:
        super().__init__(message)
        self.rename_to = rename_to


def open_binary(location: Any) -> IO[bytes]:
    """The landing file opened for reading (a local path or any storage location); one place tests can fault."""
    return storage.location(location).open("rb")  # type: ignore[no-any-return]


class _Peekable(io.RawIOBase):
    """A read-only stream that can show its first bytes before handing them on (to sniff magic, read a header)."""

    def __init__(self) -> None:
        super().__init__()
        self._head = b""

    @abc.abstractmethod
    def _pull(self, n: int) -> bytes:
        """Up to ``n`` more bytes from the underlying stream (b"" at its end): what each reader adds."""

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            data = self._pull(n - len(self._head))
            if not data:
                break
            self._head += data
        return self._head[:n]

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            n = len(self._head) if size is None or size < 0 else size
            out, self._head = self._head[:n], self._head[n:]
            return out
        if size is None or size < 0:
            return b"".join(iter(lambda: self._pull(1 << 20), b""))
        return self._pull(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class HashingReader(_Peekable):
    """The file's bytes, hashed as they are read: what the parser saw is what the SHA-256 says."""

    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self._fh = fh
        self._sha = hashlib.sha256()
        self.size = 0

    def _pull(self, n: int) -> bytes:
        data = self._fh.read(n)
        self._sha.update(data)
        self.size += len(data)
        return data

    def finish(self) -> tuple[str, int]:
        """(sha256, size) of the whole file as read: the rest is read (and hashed) if the parser stopped early."""
        while self._pull(1 << 20):
            pass
        self._head = b""
        return self._sha.hexdigest(), self.size


class Utf8Checked(_Peekable):
    """Hands text bytes on unchanged and fails at the first byte that is not UTF-8, naming its offset."""

    def __init__(self, src: IO[bytes] | io.RawIOBase) -> None:
        super().__init__()
        self._src = src
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.offset = 0

    def _pull(self, n: int) -> bytes:
        data = self._src.read(n) or b""
        pending = len(self._decoder.getstate()[0])
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise BadFile(
                f"not UTF-8 (byte {self.offset - pending + exc.start}): save the file as UTF-8"
            ) from None
        self.offset += len(data)
        return data


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose format errors become BadFile (a truncated .gz is a bad file, not an OS fault)."""

    def __init__(self, inner: IO[bytes], kind: str) -> None:
        super().__init__()
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._inner.read(-1 if size is None else size)
        except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, OSError) as exc:
            raise BadFile(f"corrupt {self._kind} data: {exc}") from exc


@dataclass(frozen=True)
class _Format:
    kind: str
    magic: bytes
    suffix: str


_COMPRESSED = (
    _Format("gzip", b"\x1f\x8b", ".gz"),
    _Format("bzip2", b"BZh", ".bz2"),
    _Format("xz", b"\xfd7zXZ\x00", ".xz"),
    _Format("zstd", b"\x28\xb5\x2f\xfd", ".zst"),
)
_OPENERS: dict[str, Any] = {
    "gzip": lambda fh: gzip.GzipFile(fileobj=fh, mode="rb"),
    "bzip2": bz2.BZ2File,
    "xz": lzma.LZMAFile,
}


def _sniff(head: bytes) -> _Format | None:
    return next((f for f in _COMPRESSED if head.startswith(f.magic)), None)


def text_stream(raw: HashingReader, name: str) -> tuple[Utf8Checked, str]:
    """The decompressed, UTF-8-checked text of a CSV landing file and its format ("csv", "csv+gzip", ...).

    The first bytes decide: a compressed file must carry the matching suffix, a plain one must not, so neither a
    misnamed upload nor a half-written archive is ever parsed as text."""
    head = raw.peek(8)
    found = _sniff(head)
    named = next((f for f in _COMPRESSED if name.lower().endswith(f.suffix)), None)
    inner = name.lower().removesuffix(named.suffix) if named else name.lower()
    ext = "." + inner.rsplit(".", 1)[-1] if "." in inner else "(no extension)"
    if head.startswith(b"PK\x03\x04"):
        raise BadFile("a zip archive: unpack it and land the CSV or Parquet files themselves")
    if head.startswith(b"PAR1"):
        raise BadFile(f"a Parquet file named {ext}: rename it .parquet", rename_to=".parquet")
    if found is not None and (named is None or named.kind != found.kind):
        shown = named.suffix if named else ext
        raise BadFile(
            f"{found.kind}-compressed file named {shown}: rename it {ext}{found.suffix}",
            rename_to=f"{ext}{found.suffix}",
        )
    if named is not None and found is None and head:
        raise BadFile(f"named {named.suffix} but not {named.kind}-compressed: rename it {ext}", rename_to=ext)
    if found is None:
        return Utf8Checked(raw), "csv"
    if found.kind not in _OPENERS:
        raise BadFile(f"{found.kind}-compressed: airgate reads gzip, bzip2 and xz; recompress it as {ext}.gz")
    return Utf8Checked(_Decompressed(_OPENERS[found.kind](raw), found.kind)), f"csv+{found.kind}"
