"""One APIRouter per resource of the governance API."""
