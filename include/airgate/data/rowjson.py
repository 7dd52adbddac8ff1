"""Raw-row content JSON built column-wise: one JSON object per row, column -> string, "" for empty.

Serialising a million rows one ``json.dumps`` at a time costs more than parsing them, so the objects are
assembled from the columns with pyarrow string kernels (quotes and backslashes escaped in place). A row holding a
control character, or an extra key to add (a mark for cleaning), falls back to ``json.dumps``; both give the same
object when read back. Non-ASCII text is kept as UTF-8, which JSON allows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CONTROL = "[\\x00-\\x1f]"
_CONTROL_OR_BACKSLASH = "[\\x00-\\x1f\\\\]"
_MANY = 0.01  # above this share of rows needing escapes, escape column-wise instead of row by row


@dataclass(frozen=True)
class Encoded:
    """One chunk's rows as text: ``contents`` (stored), ``canonical`` (hashed into the version's content hash)."""

    contents: pa.Array
    canonical: pa.Array


def content_text(row: dict[str, str]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def canonical_text(row_num: int, row: dict[str, str]) -> str:
    """The line ``datasets.content_hash`` hashes for a raw row (and ``datasets.verify`` recomputes)."""
    return json.dumps([row_num, sorted(row.items())], default=str, separators=(",", ":")) + "\n"


def _as_string(col: pa.Array) -> pa.Array:
    arr = col if col.type == pa.string() else pc.cast(col, pa.string())
    return arr.fill_null("") if arr.null_count else arr


def _escaped(arr: pa.Array) -> pa.Array:
    return pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')


def _texts(header: list[str], strings: list[pa.Array], row_nums: np.ndarray) -> Encoded:
    content: list[Any] = []
    for i, (name, arr) in enumerate(zip(header, strings, strict=True)):
        content += [("{" if i == 0 else '",') + json.dumps(name, ensure_ascii=False) + ':"', arr]
    canonical: list[Any] = ["[", pa.array(row_nums, pa.int64()).cast(pa.string()), ",["]
    for j, (name, arr) in enumerate(sorted(zip(header, strings, strict=True), key=lambda t: t[0])):
        canonical += [('["' if j == 0 else '"],["') + json.dumps(name)[1:-1] + '","', arr]
    return Encoded(
        pc.binary_join_element_wise(*content, '"}', ""),
        pc.binary_join_element_wise(*canonical, '"]]]\n', ""),
    )


def _flags(texts: Encoded, quotes: int | None) -> np.ndarray:
    """Rows whose texts are not right as joined: a quote or backslash in a value (unless already escaped, then
    ``quotes`` is None), a control character, or non-ASCII (which the canonical text escapes)."""
    c = texts.contents
    if quotes is None:
        bad = pc.match_substring_regex(c, _CONTROL)
    else:
        bad = pc.or_(
            pc.match_substring_regex(c, _CONTROL_OR_BACKSLASH),
            pc.not_equal(pc.count_substring(c, '"'), quotes),
        )
    return pc.or_(bad, pc.invert(pc.string_is_ascii(c))).to_numpy(zero_copy_only=False)


def encode(
    header: list[str], columns: list[pa.Array], row_nums: np.ndarray, extra: dict[int, dict[str, str]]
) -> Encoded:
    """Both texts of every row, joined column-wise with pyarrow; the few rows with a character that needs
    escaping (quote, backslash, control, non-ASCII for the canonical text) or with ``extra`` keys (by index in the
    chunk) are redone with ``json.dumps``. Many quoted values: the columns are escaped first, column-wise."""
    n = len(row_nums)
    strings = [_as_string(c) for c in columns]
    texts = _texts(header, strings, row_nums)
    redo = _flags(texts, 4 * len(header)) if n else np.zeros(0, dtype=bool)
    if redo.sum() > _MANY * n:
        strings_escaped = [_escaped(a) for a in strings]
        texts = _texts(header, strings_escaped, row_nums)
        redo = _flags(texts, None)
    redo[list(extra)] = True
    idx = np.flatnonzero(redo).tolist()
    if not idx:
        return texts
    rows = [{h: strings[j][i].as_py() for j, h in enumerate(header)} | extra.get(i, {}) for i in idx]
    return Encoded(
        pc.replace_with_mask(texts.contents, redo, pa.array([content_text(r) for r in rows], pa.string())),
        pc.replace_with_mask(
            texts.canonical,
            redo,
            pa.array(
                [canonical_text(int(row_nums[i]), r) for i, r in zip(idx, rows, strict=True)], pa.string()
            ),
        ),
    )


def _python_strings(arr: pa.Array) -> pa.Array:
    """Values as the Python objects print them (timestamps and dates in ISO-8601, with their offset)."""
    return pa.array(
        [
            "" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v))
            for v in arr.to_pylist()
        ],
        pa.string(),
    )


def _decoded(arr: pa.Array) -> tuple[pa.Array, list[int]]:
    """BINARY as UTF-8; a value that is not UTF-8 keeps its bytes visible (backslash escapes) and is reported."""
    try:
        return pc.cast(arr, pa.string()).fill_null(""), []
    except pa.ArrowInvalid:
        pass
    values, bad = [], []
    for i, v in enumerate(arr.to_pylist()):
        try:
            values.append("" if v is None else v.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(v.decode("utf-8", "backslashreplace"))
            bad.append(i)
    return pa.array(values, pa.string()), bad


def strings_of(arr: pa.Array) -> tuple[pa.Array, list[int]]:
    """A Parquet column as strings ("" for null) and the rows whose value could not be decoded."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return strings_of(arr.dictionary_decode())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(arr, pa.string()).fill_null(""), []
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _decoded(arr)
    if pa.types.is_integer(t):
        return pc.cast(arr, pa.string()).fill_null(""), []
    return _python_strings(arr), []
