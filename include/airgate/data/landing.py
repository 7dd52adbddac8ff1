"""The landing zone as the ledger sees it: which files are there, their content hash, and which are new.

"New" is a (path, SHA-256) pair the file ledger has not recorded, so a zone that keeps its old files is not
ingested twice, a copy under a new name is noticed, and a rewritten file is picked up. One unreadable file (a
permission error, an I/O fault) never stops the others: it is listed with its error and a stand-in hash, so the
ingest records it as rejected once, and it comes back as new when it changes or becomes readable.
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


def _landing_file(p: Any) -> LandingFile | None:
    """One file of the landing zone, hashed; an unreadable one is described, never raised (the others go on)."""
    name, st = storage.as_string(p), None
    try:
        st = p.stat()
        with landing_io.open_binary(p) as fh:
            sha, size = landing_io.HashingReader(fh).finish()
    except FileNotFoundError:
        return None  # gone since the listing (renamed into place elsewhere, or deleted)
    except OSError as exc:
        log.warning("cannot read landing file %s: %s", name, exc)
        return LandingFile(
            name, int(getattr(st, "st_size", 0)), _fingerprint(name, st, exc), f"cannot read: {exc}"
        )
    return LandingFile(name, size, sha)


def scan(landing_dir: Any, pattern: str) -> list[LandingFile]:
    """Files in the landing zone, skipping hidden and temporary names (writers rename into place when done)."""
    folder = as_path(landing_dir)
    if not folder.exists() or not folder.is_dir():
        return []
    paths = sorted(folder.glob(pattern), key=str)
    found = (_landing_file(p) for p in paths if not p.name.startswith(".") and _is_file(p))
    return [f for f in found if f is not None]


def _is_file(p: Any) -> bool:
    try:
        return bool(p.is_file())
    except OSError:
        return True  # cannot even stat it: let _landing_file record why


def new_files(engine: Engine, model: str, landing_dir: Any, pattern: str) -> list[LandingFile]:
    """Files whose (path, content) the ledger has not seen: new files, and changed or copied ones."""
    files = scan(landing_dir, pattern)
    if not files:
        return []
    with engine.connect() as conn:
        seen = {
            (r.path, r.sha256)
            for r in conn.execute(
                select(file_ledger.c.path, file_ledger.c.sha256).where(file_ledger.c.model == model)
            )
        }
    return [f for f in files if (f.path, f.sha256) not in seen]
