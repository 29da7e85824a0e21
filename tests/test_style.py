"""The code stays formatted and lint-clean with the settings in pyproject.toml ([tool.ruff])."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    beside_python = Path(sys.executable).with_name("ruff")
    found = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (the [dev] extra installs it)")
    return [found]


@pytest.mark.parametrize(
    ("command", "advice"),
    [(["format", "--check"], "run `ruff format .`"), (["check"], "run `ruff check .` and fix what it names")],
    ids=["format", "lint"],
)
def test_the_tree_is_clean(command, advice):
    result = subprocess.run([*ruff(), *command, "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{advice}:\n{result.stdout}{result.stderr}"
