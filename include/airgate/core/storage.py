"""Where the files live that one task writes and another reads: one storage root, through Airflow's ObjectStoragePath.

In a real deployment every task runs in its own process, possibly on another host (Celery workers, Kubernetes
pods), and tasks share nothing but the databases and an object store. So every such file is a key under one
root, never a path on the worker's own disk: run folders (training splits, candidate results, the Pareto plot,
test predictions, gate reports, drift reports, scoring plans and their history shards), the feature store, Great
Expectations results and Data Docs, and the files a spec names (the item catalog, the roster, the late-label and
review folders, the landing zone).

Settings, read on every call (a process, or a test, may change them):

* ``AIRGATE_STORAGE_URL``: the root, e.g. ``file:///srv/airgate`` (a folder every host mounts),
  ``s3://bucket/airgate`` or ``gs://bucket/airgate`` (Airflow needs the provider of that scheme), or
  ``memory://name/airgate`` (fsspec's in-process store: tests).
* ``AIRGATE_STORAGE_CONN_ID``: the Airflow connection ObjectStoragePath takes credentials from, for URIs of the
  root's scheme.
* Unset, the embedded default is ``file://$AIRGATE_HOME``: one machine, local folders, exactly where the files were
  before this layer existed.

A spec path is read the same way everywhere (``location``): a URI (``s3://...``) stays as it is, a plain absolute
path is a local file (``file://``), a relative path is under the root.

Writes are whole or absent (``write_bytes_atomic``): on a local filesystem a temp file beside the target, then a
rename; on an object store one put, since an object appears only when its upload completes. A reader never sees
half a file. Reading something that is not there raises ``StorageFileNotFound``, naming the location and the
setting: nothing falls back to a local path quietly.

Libraries that insist on a real local file (MLflow ``log_artifact``, GX's file context and Data Docs) work in
``scratch()`` and ``upload_file``/``upload_tree`` the result; ``local_copy``/``download_tree`` bring files down.
pandas and pyarrow read and write through ``open_read`` and bytes.

Written down (a manifest, a plan, the evidence, a warehouse row) a location is ``as_string``: a local file as its
plain absolute path (what records held before, and what ``pathlib`` and every local tool take), anything else as
its URI. ``location`` reads both back.

Light at import: Airflow's SDK (and with it fsspec) is imported inside the functions, never at module level.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    StoragePath: TypeAlias = ObjectStoragePath

URL_ENV = "AIRGATE_STORAGE_URL"
CONN_ENV = "AIRGATE_STORAGE_CONN_ID"
LOCAL_PROTOCOLS = frozenset({"file", "local", ""})
_CHUNK = 1 << 20

# Anything a caller may name a location with: a spec string, a local Path, or a location already.
Location: TypeAlias = "str | os.PathLike[str] | ObjectStoragePath"


class StorageError(RuntimeError):
    """A storage setting or a location is unusable; the message names the setting and the fix."""


class StorageFileNotFound(FileNotFoundError):
    """A file airgate needs is not in storage; the message names the location, what it is and the setting."""


def url() -> str:
    """The root's URL: ``AIRGATE_STORAGE_URL``, else ``file://$AIRGATE_HOME`` (one machine, local folders)."""
    configured = os.environ.get(URL_ENV, "").strip()
    if configured:
        if "://" not in configured:
            raise StorageError(
                f"{URL_ENV}={configured!r} is not a URL: write file:///srv/airgate for a shared "
                "folder, or s3://bucket/prefix (any scheme Airflow's ObjectStoragePath knows)"
            )
        return configured.rstrip("/")
    from airgate.core.settings import airgate_home

    return f"file://{airgate_home()}"


def describe() -> str:
    """The setting as an error message should name it."""
    configured = os.environ.get(URL_ENV, "").strip()
    return f"{URL_ENV}={configured}" if configured else f"{URL_ENV} unset: the default root {url()}"


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


@cache
def _attach_memory() -> None:
    """fsspec's in-process ``memory://`` store is no Airflow provider's, so Airflow cannot open it by itself:
    attach it once per process (the store is global to the process, like its contents)."""
    from airflow.sdk.io import attach, has_fs
    from fsspec.implementations.memory import MemoryFileSystem

    if not has_fs("memory"):
        attach(protocol="memory", fs=MemoryFileSystem())


def _path(uri: str) -> StoragePath:
    """An ObjectStoragePath for a URI; the storage connection goes with URIs of the root's scheme."""
    from airflow.sdk import ObjectStoragePath

    scheme = _scheme(uri)
    if scheme == "memory":
        _attach_memory()
    conn_id = os.environ.get(CONN_ENV) or None
    return ObjectStoragePath(uri, conn_id=conn_id if conn_id and scheme == _scheme(url()) else None)


def root() -> StoragePath:
    """The storage root (``AIRGATE_STORAGE_URL``)."""
    return _path(url())


def location(path: Location) -> StoragePath:
    """Where a named file is: a URI as it is, a plain absolute path as a local file, a relative path under the
    root. A location is returned as it is. ``$VARS`` are expanded. A relative path may not climb out of the root."""
    if not isinstance(path, str | os.PathLike):
        return path
    text = os.path.expandvars(os.fspath(path))
    if "://" in text:
        return _path(text)
    if os.path.isabs(text):
        return _path(f"file://{text}")
    if ".." in PurePosixPath(text).parts:
        raise StorageError(
            f"{text!r} climbs out of the storage root ({describe()}): name a path under it, or a full URI"
        )
    return root() / text if text not in ("", ".") else root()


def is_local(path: Location) -> bool:
    """True when the location is on this machine's filesystem (file://)."""
    return location(path).protocol in LOCAL_PROTOCOLS


def as_string(path: Location) -> str:
    """How a location is written down: a local file as its plain absolute path, anything else as its URI."""
    p = location(path)
    return str(p.path) if p.protocol in LOCAL_PROTOCOLS else str(p)


def runs() -> StoragePath:
    """The run folders: ``runs`` under the root."""
    return root() / "runs"


def exists(path: Location) -> bool:
    return bool(location(path).exists())


def is_file(path: Location) -> bool:
    return bool(location(path).is_file())


def missing(path: Location, what: str = "") -> StorageFileNotFound:
    """The error for a file that is not there, naming it, what it is for, and where storage points."""
    about = f" ({what})" if what else ""
    return StorageFileNotFound(f"{as_string(path)}{about} is not in airgate's storage ({describe()})")


@contextmanager
def open_read(path: Location, what: str = "") -> Iterator[IO[bytes]]:
    """The file opened for binary reading (pandas and pyarrow take it; a Parquet reader seeks, not downloads)."""
    p = location(path)
    try:
        fh = p.open("rb")
    except FileNotFoundError as exc:
        raise missing(p, what) from exc
    with fh:
        yield fh


def read_bytes(path: Location, what: str = "") -> bytes:
    with open_read(path, what) as fh:
        return bytes(fh.read())


def read_text(path: Location, what: str = "", encoding: str = "utf-8") -> str:
    return read_bytes(path, what).decode(encoding)


def _replace_local(final: Path, fill: Callable[[Path], object]) -> None:
    """Fill a temp file with a unique name beside the target, then rename it over the target: atomic on one
    filesystem, and two writers never share a temp file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fill(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _local_replace(target: StoragePath, fill: Callable[[Path], object]) -> None:
    _replace_local(Path(str(target.path)), fill)


def replace_local_file(path: Path, data: bytes) -> None:
    """Write a file on this host's own disk whole (a pod's XCom file), the same way as ``write_bytes_atomic``."""
    _replace_local(path.resolve(), lambda tmp: tmp.write_bytes(data))


def write_bytes_atomic(path: Location, data: bytes) -> StoragePath:
    """Write the whole file at once, so that a reader sees the old file or the whole new one, never half: a temp
    file and a rename on a local filesystem, one put on an object store (an object appears when its put
    completes). Returns its location."""
    target = location(path)
    if target.protocol in LOCAL_PROTOCOLS:
        _local_replace(target, lambda tmp: tmp.write_bytes(data))
    else:
        target.fs.pipe_file(target.path, data)
    return target


def write_text_atomic(path: Location, text: str, encoding: str = "utf-8") -> StoragePath:
    return write_bytes_atomic(path, text.encode(encoding))


@contextmanager
def scratch(prefix: str = "airgate-") -> Iterator[Path]:
    """A local folder for this process only, removed afterwards: where tools that need real files work."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def download_file(path: Location, local: Path, what: str = "") -> Path:
    """Copy one stored file to a local path (its folder is created)."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with open_read(path, what) as src, open(local, "wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
    return local


@contextmanager
def local_copy(path: Location, what: str = "") -> Iterator[Path]:
    """A stored file as a local file in scratch, for a library that cannot read from storage; removed afterwards."""
    p = location(path)
    with scratch() as tmp:
        yield download_file(p, tmp / p.name, what)


def upload_file(local: Path, dest: Location) -> StoragePath:
    """Put a local file (a plot, a report a library wrote) into storage, atomically; returns its location."""
    target = location(dest)
    if target.protocol in LOCAL_PROTOCOLS:
        _local_replace(target, lambda tmp: shutil.copyfile(local, tmp))
    else:
        target.fs.put_file(
            str(local), target.path
        )  # one put, or a multipart upload that completes at the end
    return target


FileState: TypeAlias = Mapping[str, tuple[int, int]]


def tree_state(local_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under a local folder, by relative POSIX path: what ``upload_tree`` may skip."""
    return {
        p.relative_to(local_dir).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(local_dir.rglob("*"))
        if p.is_file()
    }


def upload_tree(local_dir: Path, dest: Location, unchanged: FileState | None = None) -> StoragePath:
    """Put every file under a local folder into storage under ``dest`` (each one atomically). Files whose
    (size, mtime) ``unchanged`` records, i.e. that came down with ``download_tree`` and were not touched, stay as
    they are in storage."""
    target = location(dest)
    skip = unchanged or {}
    for rel, state in tree_state(local_dir).items():
        if skip.get(rel) != state:
            upload_file(local_dir / rel, target / rel)
    return target


def download_tree(src: Location, local_dir: Path, *, missing_ok: bool = False) -> dict[str, tuple[int, int]]:
    """Copy every file under ``src`` into a local folder; returns ``tree_state`` of what came down (for
    ``upload_tree``). A tree not written yet is an error unless ``missing_ok`` says it may not exist yet."""
    base = location(src)
    local_dir.mkdir(parents=True, exist_ok=True)
    if not base.exists():
        if missing_ok:
            return {}
        raise missing(base, "a folder")
    prefix = str(base.path).rstrip("/") + "/"
    for p in base.rglob("*"):
        if p.is_file():
            rel = str(p.path)[len(prefix) :] if str(p.path).startswith(prefix) else p.name
            download_file(p, local_dir / rel)
    return tree_state(local_dir)
