"""Command line entry points: deploy steps (``migrate``) and work that runs outside the Airflow worker, in a pod.

``migrate`` brings the warehouse to this release's schema and creates MLflow's tables; it runs once per deploy
(``make init``, an init container of the Helm chart's migration job, docs/kubernetes.md) and is safe to start from several places at once (it takes a lock).

A pod started by KubernetesPodOperator runs ``python -m airgate.cli <command> ...``. It gets ids on the command
line and everything else (warehouse and MLflow connections, the prepared split) from its environment, so the
same image serves every model and every run. The result travels back as JSON: the operator's XCom sidecar reads
``/airflow/xcom/return.json``, which is why a command writes its result there as well as printing it.

Only argparse, json and os are imported here: the stage modules (pandas, LightGBM, MLflow, ...) are imported by
the command that needs them, so ``--help`` stays instant and the module is safe to import anywhere.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Where KubernetesPodOperator(do_xcom_push=True) expects the result; overridable so tests need no /airflow.
DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"
XCOM_PATH_ENV = "AIRGATE_XCOM_PATH"

Command = Callable[[argparse.Namespace], dict[str, Any]]


def xcom_path() -> Path:
    return Path(os.environ.get(XCOM_PATH_ENV) or DEFAULT_XCOM_PATH)


def write_result(result: dict[str, Any], *, xcom: bool) -> str:
    """Print the result and, for the XCom sidecar, write it to the return file.

    The file is written when asked (``--xcom``) or when its folder exists, which is exactly when the operator
    mounted the XCom volume: a pod run with do_xcom_push cannot forget the flag, and a shell run leaves no file.
    ``default=float`` because metrics come back as NumPy scalars.
    """
    text = json.dumps(result, default=float, sort_keys=True)
    path = xcom_path()
    if xcom or path.parent.is_dir():
        from airgate.core import storage

        storage.replace_local_file(path, text.encode("utf-8"))  # the sidecar never sees half a file
    print(text)
    return text


def _train_candidate(args: argparse.Namespace) -> dict[str, Any]:
    from airgate.model.training import train_candidate_from_env  # heavy: pandas, LightGBM, MLflow, Optuna

    return train_candidate_from_env(args.model, args.training_run_id, args.candidate)


def _score_partition(args: argparse.Namespace) -> dict[str, Any]:
    from airgate.serving.scoring import score_shard_from_env  # heavy: pandas, pyarrow, LightGBM, MLflow

    return score_shard_from_env(args.model, args.scoring_run_id, args.shard)


def _migrate(args: argparse.Namespace) -> dict[str, Any]:
    from airgate.core import migrations
    from airgate.core.settings import warehouse_url
    from airgate.core.warehouse import make_engine

    engine = make_engine(args.url or warehouse_url())
    try:
        before = migrations.current_revision(engine)
        migrations.upgrade(engine)
        out: dict[str, Any] = {
            "warehouse": engine.url.render_as_string(hide_password=True),
            "from": before,
            "to": migrations.current_revision(engine),
        }
    finally:
        engine.dispose()
    if not args.skip_mlflow:
        out["mlflow"] = _init_mlflow()
    out["audit_seal"] = _seal_if_keyed(args.url)
    return out


def _seal_if_keyed(url: str | None) -> dict[str, Any] | str:
    """After the upgrade, MAC what the chain holds unsealed (revision 0013) when the audit key is set."""
    from airgate.core.settings import SettingMissing, audit_key

    try:
        audit_key()
    except SettingMissing as exc:
        return f"skipped: {exc}"
    return _audit(argparse.Namespace(action="seal", url=url))


def _registry_or_none() -> Any:
    """MLflow's config when this process has one (then the registry anchor is written and checked too)."""
    from airgate.core.settings import SettingMissing, mlflow_config

    try:
        return mlflow_config()
    except SettingMissing:
        return None


def _audit(args: argparse.Namespace) -> dict[str, Any]:
    """``audit verify`` (chain, MACs, anchors), ``audit seal`` (MAC an upgraded log once, then anchor) and
    ``audit anchor`` (write the head outside the warehouse)."""
    from dataclasses import asdict

    from airgate.core import audit_anchor, audit_seal
    from airgate.core.settings import warehouse_url
    from airgate.core.warehouse import make_engine

    engine = make_engine(args.url or warehouse_url())
    try:
        cfg = _registry_or_none()
        if args.action == "verify":
            return {"action": "verify", **asdict(audit_anchor.verify(engine, cfg))}
        out: dict[str, Any] = {"action": args.action, "ok": True}
        if args.action == "seal":
            out.update(asdict(audit_seal.seal(engine)))
        if out["ok"]:
            head = audit_anchor.anchor(engine, cfg)
            out["anchored_seq"] = head.seq if head else None
        return out
    finally:
        engine.dispose()


def _init_mlflow() -> str:
    """Create MLflow's own tables now, once: left to the first tasks, three candidates starting together on an
    empty tracking database would race to create them."""
    from airgate.core import registry
    from airgate.core.settings import mlflow_config

    cfg = mlflow_config()
    registry.client(cfg).search_experiments(max_results=1)
    return cfg.tracking_uri.split("@")[-1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airgate.cli",
        description="airgate deploy steps and the stages that run in a pod. Ids come from arguments; "
        "settings from the environment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = sub.add_parser(
        "migrate",
        help="bring the warehouse to this release's schema (once per deploy, before the DAGs run)",
        description="Run the warehouse's Alembic migrations to head. Serialised across processes (an advisory "
        "lock on PostgreSQL, a file lock on SQLite), so several deploy steps may start it at once.",
    )
    migrate.add_argument(
        "--url",
        help="SQLAlchemy URL (default: AIRGATE_WAREHOUSE_URL, else the Airflow connection airgate_warehouse)",
    )
    migrate.add_argument(
        "--skip-mlflow",
        action="store_true",
        help="do not create MLflow's tables (default: also initialise the tracking store named by "
        "AIRGATE_MLFLOW_URI or the airgate_mlflow connection)",
    )
    migrate.set_defaults(func=_migrate)

    train = sub.add_parser(
        "train-candidate",
        help="tune, fit and log one candidate of a prepared training run",
        description="Tune, fit and log one candidate on the split already prepared for the training run. "
        "Who trained it and on which labeled version come from the run's identity record, not from arguments. "
        "Idempotent: a finished candidate returns its stored result.",
    )
    train.add_argument("--model", required=True, help="model name (the spec file's stem)")
    train.add_argument("--training-run-id", required=True, help="training run whose split is prepared")
    train.add_argument("--candidate", required=True, help="candidate name from the spec")
    train.add_argument(
        "--xcom",
        action="store_true",
        help=f"also write the JSON result to ${XCOM_PATH_ENV} (default {DEFAULT_XCOM_PATH})",
    )
    train.set_defaults(func=_train_candidate)

    part = sub.add_parser(
        "score-partition",
        help="score one shard of a planned scoring run into the predictions table",
        description="Stream one shard of a planned scoring run through the champion in chunks and write its "
        "predictions under the run. Idempotent: a retry replaces the shard's own rows.",
    )
    part.add_argument("--model", required=True, help="model name (the spec file's stem)")
    part.add_argument("--scoring-run-id", required=True, help="scoring run whose plan names the shard")
    part.add_argument("--shard", required=True, type=int, help="shard number, from 0")
    part.add_argument(
        "--xcom",
        action="store_true",
        help=f"also write the JSON result to ${XCOM_PATH_ENV} (default {DEFAULT_XCOM_PATH})",
    )
    part.set_defaults(func=_score_partition)

    aud = sub.add_parser(
        "audit",
        help="verify, seal or anchor the audit log",
        description="verify: every entry's link, hash and MAC, then the anchors in storage and the registry "
        "(exit status 1 when it fails). seal: MAC entries written before the audit key, once. anchor: write the "
        "log's head to storage and the MLflow registry. Needs AIRGATE_AUDIT_KEY (or [airgate] audit_key).",
    )
    aud.add_argument("action", choices=["verify", "seal", "anchor"])
    aud.add_argument("--url", help="SQLAlchemy URL (default: the warehouse setting, as for migrate)")
    aud.set_defaults(func=_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("AIRGATE_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    func: Command = args.func
    result = func(args)
    write_result(result, xcom=bool(getattr(args, "xcom", False)))
    return 1 if result.get("ok") is False else 0  # a failed check (audit verify) fails the shell step


if __name__ == "__main__":
    sys.exit(main())
