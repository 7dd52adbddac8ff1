"""Review answers: only for events open in the queue, never from the model's owner or trainers; refusals audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from airgate.core.run_identity import RunIdentity, record_identity
from airgate.core.warehouse import audit_log, review_queue, utcnow
from airgate.governance import reviews
from airgate.governance.promotion import Actor, GovernanceError

REVIEWER = Actor("rita", frozenset({"op"}))


@pytest.fixture
def queued(engine, spec, small_sim, tmp_path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    """Two unlabeled clean events put in the review queue; a third unlabeled one left out of it."""
    from airgate.data import clean, collect, labeling
    from tests.helpers import land

    collect.ingest(engine, spec, land(small_sim, tmp_path, range(1)))
    clean.clean_pending(engine, spec)
    result = labeling.label_pending(engine, spec)
    unlabeled = small_sim.batch(0).events.query("correct.isna()")["event_id"].tolist()[:3]
    with engine.begin() as conn:
        for e in unlabeled[:2]:
            conn.execute(
                review_queue.insert().values(
                    model=spec.name,
                    event_id=e,
                    p=0.5,
                    uncertainty=1.0,
                    model_version="1",
                    labeled_version_id=result.labeled_version_id,
                    status="open",
                    queued_at=utcnow(),
                )
            )
    return list(unlabeled)


def _refusals(engine) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        q = select(audit_log.c.actor, audit_log.c.details, audit_log.c.entity)
        return [dict(r) for r in conn.execute(q.where(audit_log.c.event_type == "review_refused")).mappings()]


def test_answers_to_events_never_queued_are_refused_and_named(engine, spec, queued) -> None:  # type: ignore[no-untyped-def]
    """The attack: a trainer answered "review" labels for events nobody asked about, straight into the splits."""
    with pytest.raises(GovernanceError) as err:
        reviews.answer(engine, spec, [{"event_id": e, "label": 1} for e in queued], REVIEWER)
    assert err.value.status == 409 and err.value.code == "not_queued" and queued[2] in err.value.message
    assert queued[0] not in err.value.message  # only the unqueued one is named
    [refusal] = _refusals(engine)
    assert refusal["actor"] == "rita" and refusal["entity"]["event_ids"] == [queued[2]]
    # Nothing of the refused batch was written: the open events are still open.
    assert reviews.answer(engine, spec, [{"event_id": e, "label": 1} for e in queued[:2]], REVIEWER) == (2, 0)
    # Answered ones are duplicates, not new labels.
    assert reviews.answer(engine, spec, [{"event_id": queued[0], "label": 0}], REVIEWER) == (0, 1)


def test_the_owner_may_not_label_the_review_queue(engine, spec, queued) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GovernanceError) as err:
        reviews.answer(
            engine, spec, [{"event_id": queued[0], "label": 1}], Actor(spec.owner, frozenset({"op"}))
        )
    assert err.value.status == 403 and err.value.code == "separation_of_duties"
    assert "separation of duties" in err.value.message
    assert _refusals(engine)[0]["details"]["code"] == "separation_of_duties"


def test_a_trainer_of_any_run_of_the_model_may_not_label(engine, spec, queued) -> None:  # type: ignore[no-untyped-def]
    record_identity(
        engine,
        RunIdentity(
            training_run_id="tr-knowledge_tracing-manual__9",
            model=spec.name,
            dag_id="knowledge_tracing__train",
            airflow_run_id="manual__9",
            run_type="manual",
            triggered_by="tina",
            owner=spec.owner,
            labeled_version_id="lab-1",
        ),
    )
    with pytest.raises(GovernanceError) as err:
        reviews.answer(engine, spec, [{"event_id": queued[0], "label": 1}], Actor("tina", frozenset({"op"})))
    assert err.value.status == 403 and "trainer" in err.value.message
    assert reviews.answer(engine, spec, [{"event_id": queued[0], "label": 1}], REVIEWER) == (1, 0)
