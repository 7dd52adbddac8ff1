"""De-identification at ingest: the columns ``spec.privacy.pseudonymize`` names become keyed pseudonyms before
anything is stored.

A pseudonym is ``"p_" + the first 32 hex digits of HMAC-SHA256(key, value)``: the same value always maps to the
same pseudonym (so joins, per-student features and the roster still line up), and without the key a pseudonym
cannot be reversed or recomputed from a guessed value. The key is the password of the Airflow connection
``spec.privacy.key_conn_id``, from a deployment-owned backend only (``AIRFLOW_CONN_*`` or the configured secrets
backend; never the metadata database, where an op user could set a key they know); there is no default key, so a
missing one is a ``SettingMissing`` error, never a silently weak pseudonym. Empty values (a NULL as it arrived) stay empty.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from airgate.core.spec import ModelSpec

PREFIX = "p_"


@dataclass(frozen=True)
class Pseudonymizer:
    key: bytes
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(
                "a pseudonym key must not be empty: set the connection's password to a random secret"
            )

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Pseudonymizer:
        """The spec's columns (its entity column always among them) keyed by its Airflow connection's password."""
        from airgate.core.settings import SettingMissing, deployment_connection

        conn_id = spec.privacy.key_conn_id
        fix = (
            f"define the Airflow connection {conn_id} (spec field privacy.key_conn_id) with a long random password, "
            f"as AIRFLOW_CONN_{conn_id.upper()} or in the configured secrets backend (not in the metadata database)"
        )
        conn = deployment_connection(conn_id, f"pseudonym key {conn_id} (spec field privacy.key_conn_id)")
        if not conn.password:
            raise SettingMissing(
                f"the Airflow connection {conn_id} has no password, the pseudonym key: {fix}"
            )
        return cls(conn.password.encode(), pseudonymized_columns(spec))

    def value(self, text: str) -> str:
        if text == "":
            return text  # a NULL as it arrived stays empty, so missing values stay visible to the checks
        return PREFIX + hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _mapping(self, values: Iterable[str]) -> dict[str, str]:
        return {v: self.value(v) for v in set(values)}

    def apply_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The SQL path: rows of text values; each distinct value is hashed once."""
        cols = [c for c in self.columns if rows and c in rows[0]]
        maps = {c: self._mapping(str(r[c]) for r in rows if r.get(c) is not None) for c in cols}
        return [
            {k: maps[k][str(v)] if k in maps and v is not None else v for k, v in r.items()} for r in rows
        ]

    def apply_table(self, table: pa.Table) -> pa.Table:
        """The file path: a chunk of string columns; each distinct value of the chunk is hashed once."""
        for name in self.columns:
            if name not in table.column_names:
                continue
            col = table.column(name).cast(pa.string())
            distinct = pc.unique(col).drop_null()
            mapped = pa.array([self.value(v) for v in distinct.to_pylist()], type=pa.string())
            idx = pc.index_in(col, value_set=distinct)
            table = table.set_column(table.column_names.index(name), name, pc.take(mapped, idx))
        return table

    def apply_frame(self, df: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
        """A DataFrame's columns (default: this pseudonymizer's) replaced by their pseudonyms, e.g. the roster."""
        out = df.copy()
        for name in columns if columns is not None else self.columns:
            if name in out.columns:
                mapping = self._mapping(out[name].dropna().astype(str))
                out[name] = out[name].map(lambda v, m=mapping: m[str(v)] if pd.notna(v) else v)
        return out


def pseudonymized_columns(spec: ModelSpec) -> tuple[str, ...]:
    """The columns to pseudonymise: those the spec names, plus the entity column whenever the list is not empty."""
    cols = list(spec.privacy.pseudonymize)
    if cols and spec.data_schema.entity not in cols:
        cols.append(spec.data_schema.entity)
    return tuple(cols)


def pseudonymize_roster(
    roster: pd.DataFrame, spec: ModelSpec, pseudonymizer: Pseudonymizer | None = None
) -> pd.DataFrame:
    """The roster keyed like the stored data: when privacy is on, its entity column (``student_id``) becomes the
    same pseudonym the ingest wrote, so the slice join still matches; unchanged when privacy is off."""
    if not spec.privacy.pseudonymize:
        return roster
    pseudo = pseudonymizer or Pseudonymizer.from_spec(spec)
    # The roster names the entity student_id, the column the gates join on.
    return pseudo.apply_frame(roster, ["student_id"])
