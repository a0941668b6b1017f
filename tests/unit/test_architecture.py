"""The layer rules of deploy/ (docs/architecture.md), enforced: import-linter's contracts in
pyproject.toml hold on the code, and a contract broken on purpose (in a copy of the package)
fails them, so the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_layer_contracts_hold() -> None:
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("deploy/core/errors.py", "import deploy.config.settings", "core imports nothing"),
        ("deploy/serving/handles.py", "import deploy.api.auth", "layers"),
        ("deploy/video/probe.py", "import deploy.models.gpus", "layers"),
    ],
)
def test_an_import_against_the_layers_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # broken on purpose\n")
    run = _lint(tmp_path)
    assert run.returncode != 0, run.stdout[-3000:]
    assert "BROKEN" in run.stdout
    broken = [row for row in run.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert any(contract in row for row in broken) or contract in run.stdout, run.stdout[-3000:]


def test_no_two_modules_of_deploy_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for path in (ROOT / "deploy").rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not shared, shared


MAX_MODULE_LINES = 450  # docs/architecture.md: a file past this holds more than one thing


def test_no_module_of_deploy_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "deploy").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these by responsibility: {long}"
