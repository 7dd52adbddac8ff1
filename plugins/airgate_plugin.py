"""The airgate governance plugin: mounts the governance API and pages under /airgate and adds the Governance menu.

Airflow reserves /api/v2, /ui, /execution, /auth and /pluginsv2, so everything of ours lives under /airgate. Each
menu entry (and the "Approval" tab of a DAG run) has a ``url_route``, so the Airflow UI opens the page in an iframe at its own URL (same origin: the UI's
session cookie authenticates the page's API calls, and the page follows the UI's colour mode).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airgate.web.app import PREFIX, create_app

GOVERNANCE_VIEWS = (
    ("Approvals", "approvals"),
    ("Models", "models"),
    ("Audit", "audit"),
    ("Lineage", "lineage"),
)

# A tab on every DAG run's page (Airflow fills {DAG_ID} and {RUN_ID}): a train run's approval request and its
# evidence, or why the run has none. The page finds the request from the run itself, never from an XCom.
RUN_APPROVAL_VIEW = {
    "name": "Approval",
    "href": f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
    "destination": "dag_run",
    "url_route": "airgate-run-approval",
}


class AirgatePlugin(AirflowPlugin):
    name = "airgate"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "airgate governance"}]
    external_views = [
        {
            "name": name,
            "href": f"{PREFIX}/{page}",
            "destination": "nav",
            "category": "Governance",
            "url_route": f"airgate-{page}",
        }
        for name, page in GOVERNANCE_VIEWS
    ] + [RUN_APPROVAL_VIEW]
