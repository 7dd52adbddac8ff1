"""The airgate governance plugin: mounts the governance API and pages under /airgate and adds a nav entry.

Airflow reserves /api/v2, /ui, /execution, /auth and /pluginsv2, so everything of ours lives under /airgate.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airgate.web.app import PREFIX, create_app


class AirgatePlugin(AirflowPlugin):
    name = "airgate"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "airgate governance"}]
    external_views = [
        {"name": "Approvals", "href": f"{PREFIX}/approvals", "destination": "nav", "category": "Governance",
         "url_route": "airgate-approvals"},
    ]
