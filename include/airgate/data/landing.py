"""The landing zone as the ledger sees it: which files are there, their content hash, and which are new.

"New" is a (path, SHA-256) pair the file ledger has not recorded, so a zone that keeps its old files is not
ingested twice, a copy under a new name is noticed, and a rewritten file is picked up. One unreadable file (a
permission error, an I/O fault) never stops the others: it is listed with its error and a stand-in hash, so the
ingest records it as rejected once, and it comes back as new when it changes or becomes readable.

A poll does not read the whole zone: a file whose (path, size, modification time) the ledger already holds is
accounted for by that quick check (as rsync does), and only the others are hashed. So a zone that keeps its
history costs a listing per poll, not a read of every byte, and an unreadable file is not retried (and logged) on
every poll. A storage that reports no modification time gets no quick check: its files are hashed, as before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from airgate.core import storage
from airgate.core.warehouse import file_ledger
from airgate.data import landing_io

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandingFile:
    """A file seen in the landing zone. ``error`` is set when it could not be read at all; ``sha256`` is then a
    fingerprint of its name and stat (not of content), so it is rejected once, not on every poll, and picked up
    again as soon as it changes or becomes readable."""

    path: str
    size_bytes: int
    sha256: str
    error: str | None = None
    modified: float | None = None  # the listing's modification time (None: the storage reports none)


def as_path(location: Any) -> Any:
    """The landing location as a storage location (``storage.location``: a spec string, a local Path, or a
    location already)."""
    return storage.location(location)


def _fingerprint(name: str, st: Any, exc: OSError) -> str:
    """Stands in for the content hash of a file that cannot be read: changes when the file (or its mode) does."""
    parts = [name, type(exc).__name__] + [
        str(getattr(st, a, "")) for a in ("st_size", "st_mtime_ns", "st_ctime_ns", "st_mode")
    ]
    return hashlib.sha256("unreadable\0".join(parts).encode()).hexdigest()


def _modified(st: Any) -> float | None:
    """The file's last change as the quick check sees it: content (mtime) or, where the storage has one, its
    inode (ctime: a chmod that makes an unreadable file readable counts). None when the store reports no time
    (ObjectStoragePath gives 0): no quick check then."""
    mtime = getattr(st, "st_mtime", None)
    if not mtime:
        return None
    return float(max(mtime, getattr(st, "st_ctime", None) or 0))


def _stat(p: Any) -> Any:
    try:
        return p.stat()
    except FileNotFoundError:
        raise
    except OSError:
        return None  # cannot even stat it: _landing_file records why


def _landing_file(p: Any, st: Any) -> LandingFile | None:
    """One file of the landing zone, hashed; an unreadable one is described, never raised (the others go on)."""
    name = storage.as_string(p)
    try:
        with landing_io.open_binary(p) as fh:
            sha, size = landing_io.HashingReader(fh).finish()
    except FileNotFoundError:
        return None  # gone since the listing (renamed into place elsewhere, or deleted)
    except OSError as exc:
        log.warning("cannot read landing file %s: %s", name, exc)
        return LandingFile(
            name,
            int(getattr(st, "st_size", 0)),
            _fingerprint(name, st, exc),
            f"cannot read: {exc}",
            _modified(st),
        )
    return LandingFile(name, size, sha, modified=_modified(st))


QuickKey = tuple[str, int, float]


def scan(
    landing_dir: Any, pattern: str, known: set[QuickKey] | frozenset[QuickKey] = frozenset()
) -> list[LandingFile]:
    """Files in the landing zone, skipping hidden and temporary names (writers rename into place when done), and
    the files whose (path, size, modification time) is in ``known`` (already accounted for: not read again)."""
    folder = as_path(landing_dir)
    if not folder.exists() or not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob(pattern), key=str):
        if p.name.startswith(".") or not _is_file(p):
            continue
        try:
            st = _stat(p)
        except FileNotFoundError:
            continue
        mtime = _modified(st)
        if mtime is not None and (storage.as_string(p), int(st.st_size), mtime) in known:
            continue
        f = _landing_file(p, st)
        if f is not None:
            out.append(f)
    return out


def _is_file(p: Any) -> bool:
    try:
        return bool(p.is_file())
    except OSError:
        return True  # cannot even stat it: let _landing_file record why


def new_files(engine: Engine, model: str, landing_dir: Any, pattern: str) -> list[LandingFile]:
    """Files whose (path, content) the ledger has not seen: new files, and changed or copied ones. Files the
    ledger already lists with the same size and modification time are not read (the quick check)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                file_ledger.c.path, file_ledger.c.sha256, file_ledger.c.size_bytes, file_ledger.c.modified
            ).where(file_ledger.c.model == model)
        ).all()
    seen = {(r.path, r.sha256) for r in rows}
    known = {(r.path, int(r.size_bytes), float(r.modified)) for r in rows if r.modified is not None}
    return [f for f in scan(landing_dir, pattern, known) if (f.path, f.sha256) not in seen]
