"""People's answers to the review queue: the labels a person vouches for, with the person recorded.

The web layer reaches labeling only through here, because a human label is a governed act (it feeds the
validation and test splits that gates judge a model on), not a data-plane detail. The data plane still owns how a
label is stored (``airgate.data.labeling``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from airgate.core.spec import ModelSpec
from airgate.governance.requests import Actor, GovernanceError

MAX_QUEUE_PAGE = 1000


def open_queue(engine: Engine, model: str, limit: int = 100) -> list[dict[str, Any]]:
    """The rows people are asked to label, most uncertain first (at most ``MAX_QUEUE_PAGE`` at once)."""
    from airgate.data import labeling

    return labeling.open_queue(engine, model, limit=min(limit, MAX_QUEUE_PAGE))


def answer(engine: Engine, spec: ModelSpec, answers: list[dict[str, Any]], actor: Actor) -> tuple[int, int]:
    """Record each answer as a human label by ``actor``; (accepted, duplicates). ValueError for unknown events.

    Only events open in the model's review queue are labeled (an answer to anything else would put an unasked-for
    "human" label into the validation and test splits): others are refused 409, naming them. The spec's owner
    and anyone who trained one of the model's runs (their identity records) are refused 403: separation of
    duties, as for approvals. Both refusals are audited (``review_refused``) by the data layer."""
    from airgate.data import labeling

    try:
        return labeling.answer_reviews(engine, spec, answers, actor.username, origin=f"api:{actor.username}")
    except labeling.ReviewRefused as exc:
        raise GovernanceError(exc.code, exc.status, str(exc)) from None
