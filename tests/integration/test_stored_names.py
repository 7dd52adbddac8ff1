"""Names that live outside the code keep resolving after the code moved into layer packages: the module a logged
DKT model imports, the trigger classpath in Airflow's trigger table, notifier paths in specs, and the command
pod specs and the Helm migration job run."""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.sdk.module_loading import import_string

from airgate.core.spec import find_spec
from airgate.model import dkt
from airgate.orchestration import kube, notifiers, sensors

pytestmark = pytest.mark.dag_import
# What DKT models logged before and after the move run when MLflow loads them (models-from-code).
LOGGED_DKT_CODE = ("from airgate.dkt import DKTPyfunc", "from airgate.model.dkt import DKTPyfunc")


@pytest.mark.parametrize("code", LOGGED_DKT_CODE)
def test_logged_dkt_model_code_still_imports(code: str) -> None:
    namespace: dict[str, object] = {}
    exec(code, namespace)  # noqa: S102 - the exact line an MLflow model file holds
    assert namespace["DKTPyfunc"] is dkt.DKTPyfunc
    assert "from airgate.model.dkt import DKTPyfunc" in dkt.PYFUNC_CODE


def test_trigger_classpaths_old_and_new_resolve_to_the_same_trigger() -> None:
    trigger = sensors.NewLandingFilesTrigger(model="m", landing="landing/m", pattern="*.csv", poll_interval=5)
    classpath, kwargs = trigger.serialize()
    assert import_string(classpath) is sensors.NewLandingFilesTrigger
    assert import_string("airgate.sensors.NewLandingFilesTrigger") is sensors.NewLandingFilesTrigger
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)


def test_the_notifier_paths_in_the_shipped_spec_resolve() -> None:
    alerts = find_spec("knowledge_tracing").alerts
    paths = {
        t.notifier
        for targets in (alerts.on_failure, alerts.on_deadline_missed, alerts.on_drift, alerts.on_decay)
        for t in targets
    }
    assert paths == {"airgate.notifiers.LogNotifier"}
    assert all(import_string(p) is notifiers.LogNotifier for p in paths)


def test_the_cli_that_pods_and_the_migration_job_run_starts() -> None:
    assert kube.CLI == ["python", "-m", "airgate.cli"]
    out = subprocess.run(
        [sys.executable, "-m", "airgate.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "migrate" in out.stdout and "train-candidate" in out.stdout


def test_the_deadline_callback_paths_old_and_new_resolve() -> None:
    from airgate.orchestration import alerts

    deadline = alerts.deadline_alert(find_spec("knowledge_tracing"))  # its callback path is stored per run
    assert import_string(deadline.callback.path) is alerts.deadline_missed
    assert import_string("airgate.alerts.deadline_missed") is alerts.deadline_missed
