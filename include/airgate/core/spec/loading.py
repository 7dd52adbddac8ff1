"""Reading spec files: YAML with duplicate keys refused, UTF-8 checked, validated into a ModelSpec, and every problem
written for the person who edits the YAML (the file, the field and the fix), not as a pydantic traceback.

``load_catalog`` reads a whole folder one file at a time, so one broken spec is reported and costs only its own
model: the DAG file builds the others (dags/airgate_dags.py) and dags/airgate_spec_errors.py shows the broken
ones in Airflow's DAG import errors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from airgate.core.spec.model import ModelSpec
from airgate.core.spec.schedules import FIX as SCHEDULE_FIX

DEFAULT_SPECS_DIR = Path(__file__).resolve().parents[3] / "specs"
SCHEDULE_FIELDS = ("poll_schedule", "schedule", "retrain_schedule")


class SpecError(ValueError):
    """A spec that cannot be used. The message is written for the person who edits the YAML."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"invalid model spec {self.path}:"]
        for field, problem, fix in problems:
            lines.append(f"  - field '{field}': {problem}. Fix: {fix}")
        super().__init__("\n".join(lines))


_FIXES: dict[str, str] = {
    "missing": "add the field",
    "extra_forbidden": "remove it, or check its spelling against the documented fields",
    "string_pattern_mismatch": "use lowercase letters, digits and '_' and start with a letter",
    "literal_error": "use one of the allowed values",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
}


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _problems(err: ValidationError) -> list[tuple[str, str, str]]:
    out = []
    for e in err.errors():
        msg = re.sub(r"^Value error, ", "", e["msg"])
        fix = _FIXES.get(e["type"], "correct the value as the message says")
        if e["type"] == "string_pattern_mismatch" and e["loc"] and e["loc"][-1] in ("cpu", "memory"):
            fix = "use a Kubernetes quantity such as '500m' or '2' (cpu), '512Mi' or '4Gi' (memory)"
        if e["loc"] and e["loc"][-1] in SCHEDULE_FIELDS:
            fix = SCHEDULE_FIX
        if e["type"] == "string_pattern_mismatch" and e["loc"] and e["loc"][-1] == "notifier":
            fix = (
                "write the dotted import path of a notifier class or callback function, such as "
                "'airgate.notifiers.LogNotifier' or 'airflow.providers.smtp.notifications.smtp.SmtpNotifier'"
            )
        if e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            fix = f"use one of {e['ctx']['expected']}"
        out.append((_field_path(tuple(e["loc"])), msg, fix))
    return out


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        self.key, self.first_line, self.line = key, first_line, line
        super().__init__(f"duplicate key '{key}'")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; in a spec that silently drops a setting."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise _DuplicateKey(key, seen[key] + 1, key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(path, [("(file)", f"cannot read: {exc}", "check the path and permissions")]) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            path,
            [
                (
                    f"line {line}",
                    f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                    "save the file as UTF-8",
                )
            ],
        ) from exc


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise SpecError(
            path,
            [
                (
                    f"line {exc.line}",
                    f"'{exc.key}' is set twice (first on line {exc.first_line}); "
                    "YAML would silently keep only the last",
                    "keep one of the two",
                )
            ],
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(unknown line)"
        raise SpecError(path, [(where, f"not valid YAML ({exc})", "fix the YAML syntax")]) from exc
    if not isinstance(raw, dict):
        raise SpecError(path, [("(top level)", "the spec must be a mapping", "start with 'name: <model>'")])
    return raw


def load_spec(path: Path | str) -> ModelSpec:
    """One spec file, validated; a SpecError naming the file, the field and the fix otherwise."""
    path = Path(path)
    raw = _parse_yaml(path, _read_text(path))
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(path, _problems(exc)) from exc
    if spec.name != path.stem:
        raise SpecError(
            path,
            [
                (
                    "name",
                    f"'{spec.name}' differs from the file name '{path.stem}'",
                    f"rename the file to {spec.name}.yaml or set name: {path.stem}",
                )
            ],
        )
    return spec


def specs_dir() -> Path:
    return Path(os.environ.get("AIRGATE_SPECS_DIR", DEFAULT_SPECS_DIR))


def _spec_files(directory: Path | str | None) -> list[Path]:
    folder = Path(directory) if directory is not None else specs_dir()
    if not folder.is_dir():
        raise SpecError(
            folder,
            [
                (
                    "(folder)",
                    "the specs folder does not exist",
                    "set AIRGATE_SPECS_DIR to the folder that holds the model specs (*.yaml)",
                )
            ],
        )
    return sorted(folder.glob("*.yaml"))


def load_specs(directory: Path | str | None = None) -> list[ModelSpec]:
    """Every *.yaml under the specs folder, sorted by name. One bad file fails loudly, naming itself (for the CLI
    and the tools; the DAG file uses ``load_catalog``, where a bad file costs only its own model)."""
    return [load_spec(p) for p in _spec_files(directory)]


@dataclass(frozen=True)
class SpecCatalog:
    """A specs folder read file by file: the specs that loaded, and one SpecError per file that did not."""

    specs: tuple[ModelSpec, ...]
    errors: tuple[SpecError, ...]


def load_catalog(directory: Path | str | None = None) -> SpecCatalog:
    """Every spec that loads, and the errors of those that do not, so that one broken file never hides the
    other models' DAGs. A missing folder is itself an error (naming the setting), not an empty catalog."""
    specs: list[ModelSpec] = []
    errors: list[SpecError] = []
    try:
        files = _spec_files(directory)
    except SpecError as exc:
        return SpecCatalog((), (exc,))
    for path in files:
        try:
            specs.append(load_spec(path))
        except SpecError as exc:
            errors.append(exc)
    return SpecCatalog(tuple(specs), tuple(errors))


def find_spec(name: str, directory: Path | str | None = None) -> ModelSpec:
    folder = Path(directory) if directory is not None else specs_dir()
    return load_spec(folder / f"{name}.yaml")


class BrokenSpecs(Exception):
    """Raised by dags/airgate_spec_errors.py, so the specs that do not load appear in Airflow's DAG import errors."""

    def __init__(self, errors: tuple[SpecError, ...]) -> None:
        self.errors = errors
        count = f"{len(errors)} model spec{'s' if len(errors) != 1 else ''}"
        super().__init__(
            f"{count} did not load; their models have no DAGs until fixed "
            "(the other models are not affected):\n" + "\n".join(str(e) for e in errors)
        )
