"""The champion is read from the ledger only as far as the keyed audit log vouches for the newest row."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select, update

from airgate.core import audit, audit_seal, ledger_rows
from airgate.core.champion import LedgerTampered, current_champion, last_ledger_entry
from airgate.core.warehouse import audit_log, promotion_ledger, utcnow

M = "m"


def _governed(engine: Any, action: str, to_version: str | None, from_version: str | None = None) -> int:
    """A ledger row as governance writes it: through the one writer, with its audit event, in one transaction."""
    with engine.begin() as conn:
        entry = ledger_rows.write_entry(
            conn,
            model=M,
            action=action,
            from_version=from_version,
            to_version=to_version,
            approval_id=f"apr-{to_version or from_version}",
            actor="approver",
            reason="approved on the evidence",
            at=utcnow(),
        )
        event = {"promote": "promotion", "rollback": "rollback", "revoke": "revocation"}[action]
        audit.append(
            conn,
            actor="approver",
            event_type=event,
            model=M,
            entity={"ledger_id": entry.id, "ledger_hash": entry.row_hash},
        )
    return entry.id


def _forge(engine: Any, version: str) -> None:
    """The attack: a promote row written straight into the table, no approval, no audit event."""
    with engine.begin() as conn:
        conn.execute(
            promotion_ledger.insert().values(
                model=M,
                action="promote",
                to_version=version,
                approval_id="apr-x",
                actor="mallory",
                at=utcnow(),
            )
        )


def test_a_governed_promotion_is_the_champion_and_its_event_records_the_row(engine) -> None:  # type: ignore[no-untyped-def]
    ledger_id = _governed(engine, "promote", "1")
    champ = current_champion(engine, M)
    assert champ is not None and champ.version == "1"
    (event,) = audit.events(engine, event_type="promotion")
    row = last_ledger_entry(engine, M)
    assert event["entity"] == {"ledger_id": ledger_id, "ledger_hash": ledger_rows.row_hash(row)}


def test_a_forged_promote_row_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    _governed(engine, "promote", "1")
    _forge(engine, "2")
    with pytest.raises(LedgerTampered, match="cannot be trusted"):
        current_champion(engine, M)
    with pytest.raises(LedgerTampered):
        last_ledger_entry(engine, M, utcnow())  # the champion as of now too


def test_an_edited_newest_row_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    ledger_id = _governed(engine, "promote", "1")
    with engine.begin() as conn:
        conn.execute(
            update(promotion_ledger).where(promotion_ledger.c.id == ledger_id).values(to_version="9")
        )
    with pytest.raises(LedgerTampered, match="does not match the hash"):
        current_champion(engine, M)


def test_deleting_a_revocation_does_not_bring_the_revoked_version_back(engine) -> None:  # type: ignore[no-untyped-def]
    _governed(engine, "promote", "1")
    revoke_id = _governed(engine, "revoke", None, from_version="1")
    assert current_champion(engine, M) is None
    with engine.begin() as conn:
        conn.execute(delete(promotion_ledger).where(promotion_ledger.c.id == revoke_id))
    with pytest.raises(LedgerTampered, match="newest ledger audit event"):
        current_champion(engine, M)


def test_an_audit_event_forged_for_the_row_fails_its_mac(engine) -> None:  # type: ignore[no-untyped-def]
    _governed(engine, "promote", "1")
    _forge(engine, "2")
    with engine.begin() as conn:  # the forger writes the binding event too, but cannot MAC it
        forged = conn.execute(select(promotion_ledger).order_by(promotion_ledger.c.id.desc())).first()
        entity = {"ledger_id": int(forged.id), "ledger_hash": ledger_rows.row_hash(forged)}
        prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.seq.desc())).scalar()
        at = utcnow()
        h = audit.entry_hash(prev, at, "mallory", "promotion", M, entity, {})
        conn.execute(
            audit_log.insert().values(
                at=at,
                actor="mallory",
                event_type="promotion",
                model=M,
                entity=entity,
                details={},
                prev_hash=prev,
                hash=h,
                mac="0" * 64,
            )
        )
    with pytest.raises(LedgerTampered, match="fails its MAC"):
        current_champion(engine, M)
    assert not audit.verify_chain(engine).ok


def test_seal_binds_the_rows_of_an_upgraded_deployment(engine) -> None:  # type: ignore[no-untyped-def]
    for v in ("1", "2"):  # written before the binding: plain rows, events without a MAC
        _forge(engine, v)
    with engine.begin() as conn:
        conn.execute(update(audit_log).values(mac=None))
    with pytest.raises(LedgerTampered):
        current_champion(engine, M)
    got = audit_seal.seal(engine)
    assert got.ok and len(got.ledger_bound) == 2
    champ = current_champion(engine, M)
    assert champ is not None and champ.version == "2"
    assert audit_seal.seal(engine).ledger_bound == []  # once
    _governed(engine, "promote", "3", from_version="2")
    assert current_champion(engine, M).version == "3"  # type: ignore[union-attr]
