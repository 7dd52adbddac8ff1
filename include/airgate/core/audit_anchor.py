"""Anchors of the audit log kept outside the warehouse, and the whole check (chain + anchors) ``verify``.

The keyed chain (``audit``) proves no entry was edited, re-hashed or removed from the middle, but deleting the
newest entries leaves a shorter, valid chain. So the head (seq, hash, MAC, time) is written outside the warehouse
after every governance change and periodically (the monitor DAG, ``cli audit anchor``):

* to storage, one immutable object per head, ``anchors/audit/<chain>/<seq>.json``, never overwritten (``chain``
  is the first entry's hash: one storage root may outlive several warehouses, e.g. a test session's);
* when MLflow is configured, as the tag ``airgate.audit_anchor`` of the experiment ``airgate.audit``, a second
  store that moves forward only.

Anchors are MACed under the audit key, so they cannot be forged either. ``verify`` fails when the log ends below
the newest anchor, an anchor does not match the entry at its seq, storage and the registry disagree, or the log
holds governance events but nothing anchors it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from airgate.core import audit, storage
from airgate.core.hashing import canonical_json
from airgate.core.registry import MlflowConfig
from airgate.core.warehouse import as_utc, audit_log

log = logging.getLogger(__name__)

ANCHOR_DIR = "anchors/audit"
ANCHOR_CONTEXT = b"airgate.audit.anchor.v1\x00"
REGISTRY_EXPERIMENT = "airgate.audit"
REGISTRY_TAG = "airgate.audit_anchor"
# Event types whose presence means the log must be anchored (decisions and what they change).
GOVERNANCE_KINDS = ("approval_requested", "decision", "promotion", "rollback", "revocation", "audit_sealed")


class AnchorRefused(RuntimeError):
    """The head cannot be anchored: the log is unsealed, or no longer matches an anchor already written."""


@dataclass(frozen=True)
class Anchor:
    chain: str
    seq: int
    hash: str
    mac: str
    at: str
    anchor_mac: str = ""

    def _body(self) -> str:
        return canonical_json({k: v for k, v in asdict(self).items() if k != "anchor_mac"})

    def signed(self, key: bytes) -> Anchor:
        return replace(self, anchor_mac=audit.keyed_mac(key, ANCHOR_CONTEXT, self._body()))

    def authentic(self, key: bytes) -> bool:
        return bool(self.anchor_mac) and self.signed(key).anchor_mac == self.anchor_mac

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def parse(cls, text: str) -> Anchor | None:
        """The anchor in ``text``, or None when it is not one (a garbled object reads as a failed MAC)."""
        try:
            d = json.loads(text)
            return cls(
                str(d["chain"]), int(d["seq"]), str(d["hash"]), str(d["mac"]), str(d["at"]), d["anchor_mac"]
            )
        except (ValueError, KeyError, TypeError):
            return None


def _chain_id(conn: Connection) -> str | None:
    return conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq).limit(1)).scalar()


def _entry(conn: Connection, seq: int | None = None) -> Any:
    q = select(audit_log.c.seq, audit_log.c.hash, audit_log.c.mac, audit_log.c.at)
    q = q.where(audit_log.c.seq == seq) if seq is not None else q.order_by(audit_log.c.seq.desc()).limit(1)
    return conn.execute(q).first()


def _folder(chain: str) -> Any:
    return storage.root() / ANCHOR_DIR / chain[:32]


def _name(seq: int) -> str:
    return f"{seq:012d}.json"


def stored_seqs(chain: str) -> list[int]:
    """The seqs anchored in storage for this log, ascending (names only: nothing is read)."""
    folder = _folder(chain)
    if not folder.exists():
        return []
    return sorted(
        int(p.name[:-5]) for p in folder.iterdir() if p.name.endswith(".json") and p.name[:-5].isdigit()
    )


def stored(chain: str, seq: int) -> Anchor | None:
    path = _folder(chain) / _name(seq)
    return Anchor.parse(storage.read_text(path, "audit anchor")) if storage.exists(path) else None


def registry_anchor(cfg: MlflowConfig | None) -> Anchor | None | str:
    """The registry's anchor; None when there is none (or no MLflow); the raw text when it does not parse."""
    if cfg is None:
        return None
    from airgate.core import registry

    exp = registry.client(cfg).get_experiment_by_name(REGISTRY_EXPERIMENT)
    text = exp.tags.get(REGISTRY_TAG) if exp is not None else None
    if text is None:
        return None
    return Anchor.parse(text) or text


def _mismatch(conn: Connection, a: Anchor, where: str) -> str | None:
    """Why the log does not hold the entry anchor ``a`` records (None when it does)."""
    row = _entry(conn, a.seq)
    if row is None:
        head = _entry(conn)
        if head.seq < a.seq:
            return f"the log was truncated: the {where} anchor records seq {a.seq}, the log ends at seq {head.seq}"
        return f"the entry the {where} anchor records (seq {a.seq}) is gone: the newest entries were replaced"
    if row.hash != a.hash or row.mac != a.mac:
        return f"the {where} anchor does not match the chain at seq {a.seq}"
    return None


def anchor(engine: Engine, cfg: MlflowConfig | None) -> Anchor | None:
    """Anchor the head now (storage, then the registry when ``cfg``); None for an empty log. Refuses (raises
    ``AnchorRefused``) to anchor a log that no longer matches its newest anchor: that is evidence, not a head."""
    key = audit.audit_key()
    with engine.connect() as conn:
        chain, head = _chain_id(conn), _entry(conn)
        if chain is None or head is None:
            return None
        if head.mac is None:
            raise AnchorRefused(f"seq {head.seq} {audit.UNSEALED}")
        seqs = stored_seqs(chain)
        prior = stored(chain, seqs[-1]) if seqs else None
        why = _mismatch(conn, prior, "storage") if prior is not None else None
    if why:
        raise AnchorRefused(why)
    at = as_utc(head.at).isoformat(timespec="microseconds")
    a = Anchor(chain, int(head.seq), head.hash, head.mac, at).signed(key)
    path = _folder(chain) / _name(a.seq)
    if not storage.exists(path):
        storage.write_text_atomic(path, a.to_json())
    elif stored(chain, a.seq) != a:
        raise AnchorRefused(f"a different anchor for seq {a.seq} is already in storage")
    if cfg is not None:
        _anchor_registry(cfg, a)
    return a


def _anchor_registry(cfg: MlflowConfig, a: Anchor) -> None:
    from airgate.core import registry

    current = registry_anchor(cfg)
    if isinstance(current, Anchor) and current.chain == a.chain and current.seq >= a.seq:
        return  # the registry only moves forward
    exp_id = registry.experiment_id(cfg, REGISTRY_EXPERIMENT)
    registry.client(cfg).set_experiment_tag(exp_id, REGISTRY_TAG, a.to_json())


def after_change(engine: Engine, cfg: MlflowConfig | None) -> Anchor | None:
    """Anchor after a committed governance change (the plugin's decide, rollback and revoke routes). The change
    stands either way, so a failure is logged, not raised: the next periodic anchor (monitor DAG) covers it."""
    try:
        return anchor(engine, cfg)
    except Exception:  # noqa: BLE001 - storage or MLflow down must not turn a committed decision into a 500
        log.exception("could not anchor the audit log after a governance change")
        return None


def _broken(rep: audit.ChainReport, seq: int | None, why: str) -> audit.ChainReport:
    return replace(rep, ok=False, first_broken_seq=seq, reason=why)


def _newest_stored(chain: str, key: bytes) -> tuple[Anchor | None, str | None]:
    """The newest storage anchor of this log, or why it cannot be trusted."""
    seqs = stored_seqs(chain)
    if not seqs:
        return None, None
    a = stored(chain, seqs[-1])
    if a is None or not a.authentic(key) or a.seq != seqs[-1] or a.chain != chain:
        return None, f"the storage anchor for seq {seqs[-1]} fails its MAC"
    return a, None


def _registry_fault(conn: Connection, reg: Anchor, chain: str, key: bytes) -> str | None:
    """Why the registry's anchor disagrees with the log or with storage (None when it agrees with both)."""
    if reg.chain != chain:
        return "the registry anchor is for another log (its first entry differs): the log was replaced"
    copy = stored(chain, reg.seq)
    if copy != reg:
        state = "has no anchor" if copy is None else "holds a different anchor"
        return f"storage and registry anchors disagree: the registry anchors seq {reg.seq}, storage {state} for it"
    return _mismatch(conn, reg, "registry")


def _unanchored(conn: Connection) -> int | None:
    """The first governance event, when the log holds one (then it must be anchored)."""
    q = select(audit_log.c.seq).where(audit_log.c.event_type.in_(GOVERNANCE_KINDS)).order_by(audit_log.c.seq)
    return conn.execute(q.limit(1)).scalar()


def check_anchors(
    conn: Connection, rep: audit.ChainReport, key: bytes, cfg: MlflowConfig | None
) -> audit.ChainReport:
    """The anchors against a chain that already checked out (``rep``): see the module docstring for each rule."""
    reg = registry_anchor(cfg)
    if isinstance(reg, str) or (reg is not None and not reg.authentic(key)):
        return _broken(rep, getattr(reg, "seq", None), "the registry anchor fails its MAC")
    chain = _chain_id(conn)
    if chain is None:
        why = f"the log is empty but the registry anchors seq {reg.seq}: it was deleted" if reg else None
        return _broken(rep, reg.seq, why) if reg and why else rep
    newest, why = _newest_stored(chain, key)
    why = why or (_mismatch(conn, newest, "storage") if newest else None)
    if why:
        return _broken(rep, newest.seq if newest else None, why)
    if reg is not None and (why := _registry_fault(conn, reg, chain, key)):
        return _broken(rep, reg.seq, why)
    if newest is None and reg is None and (first := _unanchored(conn)) is not None:
        return _broken(
            rep,
            first,
            "no anchor: the log holds governance events but nothing outside the warehouse anchors it "
            "(run `python -m airgate.cli audit anchor`)",
        )
    seqs = [a.seq for a in (newest, reg) if a is not None]
    return replace(rep, anchored_seq=max(seqs) if seqs else None)


def verify(engine: Engine, cfg: MlflowConfig | None, batch: int = 5000) -> audit.ChainReport:
    """The whole check: every entry's link, hash and MAC (streamed, ``batch`` rows a query), then the anchors."""
    key = audit.audit_key()
    with engine.connect() as conn:
        rep = audit.check_chain(conn, key, batch)
        return check_anchors(conn, rep, key, cfg) if rep.ok else rep
