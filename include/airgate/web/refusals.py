"""Refused writes, audited: a write the web layer turns away before any governance rule runs (422 validation, 404,
405, a CSRF 403) leaves a ``request_refused`` event with who, what (method and path), the status and the reason.

What is recorded and what is not, and why:
- writes only (POST/PUT/PATCH/DELETE): reads change nothing, and auditing every refused read (a mistyped URL, a
  bad filter) would bury the events an auditor looks for;
- the caller must be authenticated (a valid Bearer token or session cookie): an anonymous refusal (401, or a 404 or
  405 without a valid credential) is not written, since every append takes the audit chain's lock and an anonymous
  client could otherwise fill the log and slow the approvals' own events at no cost; the api-server's access log
  has those;
- never the body, the query string or a submitted value: only where the request failed (``body.comment``), not
  what it said;
- refusals the governance rules raise are audited by the rules themselves (``decision_refused`` and so on), so they
  are not written twice.
"""

from __future__ import annotations

import logging

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from airgate.web.auth import actor_of

log = logging.getLogger(__name__)
EVENT = "request_refused"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_TEXT = 500


def _record(actor: str, method: str, path: str, status: int, reason: str) -> None:
    from airgate.core import audit
    from airgate.web.deps import warehouse

    audit.record(
        warehouse(),
        actor=actor,
        event_type=EVENT,
        model=None,
        entity={"method": method, "path": path[:MAX_TEXT]},
        details={"status": status, "reason": reason[:MAX_TEXT]},
    )


async def audit_refusal(request: Request, status: int, reason: str) -> bool:
    """Write the event when it is a refused write by a known caller; True when written. A failure to write is
    logged and never turns the refusal into a 500: the request is refused either way."""
    if request.method.upper() not in WRITE_METHODS or status < 400 or status == 401:
        return False
    actor = await actor_of(request)
    if actor is None:
        return False
    try:
        await run_in_threadpool(
            _record, actor.username, request.method.upper(), request.url.path, status, reason
        )
    except Exception:  # noqa: BLE001 - the refusal stands; the log says why it went unaudited
        log.exception("could not audit a refused %s %s", request.method, request.url.path)
        return False
    return True
