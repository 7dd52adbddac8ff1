"""Canonical JSON and its SHA-256: the one way airgate fingerprints a structure (audit entries, gate evidence,
approval requests).

Canonical means sorted keys, no whitespace, and ``str()`` for what JSON cannot hold (datetimes, UUIDs), so the same
structure hashes the same in every process and on every host. Changing this changes every stored hash: the audit
chain and recorded evidence would no longer verify. Content hashes of dataset versions have their own, older
encoding (``datasets.content_hash``) for the same reason.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical_sha256(value: Any) -> str:
    """SHA-256 of ``canonical_json(value)``, hex."""
    return sha256_hex(canonical_json(value))
