"""Watermark values of SQL sources: their type, a lossless text encoding, and the start of the lookback window.

The watermark is stored as text together with its type (``source_watermarks.watermark_type``) and decoded back to
that type before it is bound to a query, so the source compares it in the column's own type on every backend (a
timestamp keeps its offset, an integer is never compared as text).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

KINDS: dict[type, str] = {datetime: "datetime", date: "date", int: "int", float: "float", Decimal: "decimal"}
_DECODE: dict[str, Any] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "text": str,
}


def column_kind(column: Any) -> str:
    """The watermark's kind from the column's Python type; anything else (or an unknown type) is text."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "text"
    return KINDS.get(python_type, "text")


def as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, (datetime, date)) else str(value)


def encode(value: Any, kind: str) -> str | None:
    """Lossless text of a watermark value (None stays None: a NULL is never stored as a watermark)."""
    if value is None:
        return None
    if kind == "float":
        return repr(float(value))
    return as_text(value)


def decode(text: str, kind: str) -> Any:
    try:
        return _DECODE[kind](text)
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(f"stored watermark {text!r} is not a {kind}: {exc}") from exc


def window_start(watermark: Any, kind: str, lookback: float) -> Any:
    """``watermark - lookback`` in the column's units: seconds for datetime and date columns (a date window is
    rounded up to whole days), the value itself for numbers; a text column has no arithmetic, so no lookback."""
    if watermark is None:
        return None
    try:
        if kind == "datetime":
            return watermark - timedelta(seconds=lookback)
        if kind == "date":
            return watermark - timedelta(days=math.ceil(lookback / 86400))
        if kind == "int":
            return watermark - math.ceil(lookback)
        if kind == "float":
            return watermark - lookback
        if kind == "decimal":
            return watermark - Decimal(str(lookback))
    except OverflowError:  # a lookback past the calendar's start: the whole table is the window
        return None
    return watermark


def sort_key(watermark: Any, key: str) -> tuple[bool, Any, str]:
    """Rows in watermark order (NULLs last, then by key), the same on every backend: the content hash of two
    workers' reads of the same rows must agree."""
    return (watermark is None, watermark, key)
