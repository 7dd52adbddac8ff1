"""Schedules in a spec are checked when the spec loads, so a typo names its file and field instead of surfacing
later as an Airflow timetable error on a DAG that then never runs."""

from __future__ import annotations

from typing import Annotated

from croniter import croniter
from pydantic import AfterValidator

# What Airflow's ``schedule=`` accepts as a string besides a cron expression (airflow.sdk's CRON_PRESETS, plus the
# two special timetables).
PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
FIX = (
    "use a cron expression with five fields (minute hour day-of-month month day-of-week), such as '0 2 * * *' "
    f"for 02:00 UTC every day, or one of {', '.join(PRESETS)}"
)


def check_schedule(value: str) -> str:
    """The schedule as written, if Airflow can run it; otherwise a ValueError saying what is wrong."""
    if value.startswith("@"):
        if value not in PRESETS:
            raise ValueError(f"'{value}' is not a schedule preset Airflow knows")
        return value
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"'{value}' is not a cron expression: it has {len(fields)} fields, not 5")
    if not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a valid cron expression")
    return value


Schedule = Annotated[str, AfterValidator(check_schedule)]
