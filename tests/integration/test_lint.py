"""The pre-commit checks (ruff lint and format, mypy over code and tests, the layer contracts) as tests, so that
`make test` fails when they would; and the size rules the README's architecture section states."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.lint
MAX_MODULE_LINES = 400
LAYERS = ("core", "data", "model", "governance", "serving", "orchestration", "web", "dev")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_passes() -> None:
    out = _run("ruff", "check", "--output-format", "concise", ".")
    assert out.returncode == 0, out.stdout[-4000:]


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    out = _run("ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout[-4000:] + "\nrun: .venv/bin/ruff format ."


def test_mypy_passes_on_code_and_tests() -> None:
    out = _run("mypy")
    assert out.returncode == 0, out.stdout[-4000:]
    assert "tests" in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]


def test_imports_point_down_the_layers() -> None:
    out = _run("lint-imports", "--no-cache")
    assert out.returncode == 0, out.stdout[-4000:]
    assert "0 broken" in out.stdout and out.stdout.count("KEPT") >= 3, out.stdout[-2000:]


def test_no_module_is_over_400_lines() -> None:
    """Migrations aside: a module that long holds more than one job."""
    sources = [
        p
        for d in ("include", "dags", "plugins")
        for p in (ROOT / d).rglob("*.py")
        if "migrations" not in p.parts
    ]
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_every_layer_is_a_package_and_tests_mirror_it() -> None:
    package = ROOT / "include" / "airgate"
    assert all((package / layer / "__init__.py").is_file() for layer in LAYERS)
    assert all(
        ast.get_docstring(ast.parse((package / layer / "__init__.py").read_text())) for layer in LAYERS
    )
    unit = ROOT / "tests" / "unit"
    assert {p.name for p in unit.iterdir() if p.is_dir() and p.name != "__pycache__"} <= set(LAYERS)
    stray = [p.name for p in (ROOT / "tests").glob("test_*.py")]
    assert not stray, f"tests live under tests/unit/<layer>/, tests/integration/ or tests/e2e/: {stray}"


def test_a_warning_from_airgates_code_fails_the_test() -> None:
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old API", DeprecationWarning, "clean.py", 1, module="airgate.data.clean")
    with warnings.catch_warnings(record=True) as seen:  # a library's own warning is the library's to fix
        warnings.warn_explicit("old API", DeprecationWarning, "frame.py", 1, module="pandas.core.frame")
    assert seen == []
