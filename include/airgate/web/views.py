"""The Governance pages (HTML shells that call the JSON API). Filled in by the pages work for issue 5."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
