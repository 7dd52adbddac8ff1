"""Human labeling: the review queue of a model and the answers people give to it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from airgate.governance import reviews
from airgate.web.auth import CurrentActor
from airgate.web.deps import ReviewableSpec, Warehouse, WritingActor
from airgate.web.errors import errors
from airgate.web.schemas import ReviewAnswersIn, ReviewResult

router = APIRouter(prefix="/api/reviews", tags=["labeling"], responses=errors(401))


@router.get("/{model}/queue")
def review_queue(
    model: str, actor: CurrentActor, engine: Warehouse, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The rows people are asked to label, most uncertain first (``limit`` 1..1000: a negative one must not lift
    the cap)."""
    return reviews.open_queue(engine, model, limit=limit)


@router.post("/{model}/answers", response_model=ReviewResult, responses=errors(403, 404, 409))
def review_answers(
    model: str, body: ReviewAnswersIn, actor: WritingActor, spec: ReviewableSpec, engine: Warehouse
) -> Any:
    """Answer queued rows; each answer becomes a human label with the caller as the person. 409 for events not in
    the queue, 403 for the model's owner or trainers (separation of duties)."""
    try:
        accepted, duplicates = reviews.answer(engine, spec, [a.model_dump() for a in body.answers], actor)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"accepted": accepted, "duplicates": duplicates}
