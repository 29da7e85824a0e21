"""The house rules of DESIGN.md that a grep can check: which folder may import which, and that every
TFLite file is opened through ``edge.interpreter``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md's layout table: each product folder and the project folders it may import.
MAY_IMPORT = {
    "edge": {"edge"},
    "models": {"edge", "models"},
    "converters": {"edge", "models", "converters"},
    "build": {"edge", "models", "converters", "build"},
    "gradio_app": {"edge", "models", "gradio_app"},
}
# The one console script lives in build/cli.py, and `skinlesion app` starts the demo from there.
EXCEPTIONS = {("build/cli.py", "gradio_app")}
# The TFLite runtimes; edge.interpreter picks one, everything else asks it.
INTERPRETER_MODULES = ("ai_edge_litert", "tflite_runtime")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_each_folder_imports_only_the_layers_below_it(folder):
    allowed = MAY_IMPORT[folder]
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _modules(folder)
        for line, module in _imports(path)
        if module.split(".")[0] in MAY_IMPORT
        and module.split(".")[0] not in allowed
        and (str(path.relative_to(ROOT)), module.split(".")[0]) not in EXCEPTIONS
    ]
    assert wrong == []


def test_only_edge_interpreter_opens_tflite_files():
    opener = ROOT / "edge" / "interpreter.py"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in MAY_IMPORT
        for path in _modules(folder)
        if path != opener
        for line, module in _imports(path)
        if module.split(".")[0] in INTERPRETER_MODULES
    ]
    wrong += [
        f"{path.relative_to(ROOT)} uses tf.lite.Interpreter"
        for folder in MAY_IMPORT
        for path in _modules(folder)
        if "lite.Interpreter(" in path.read_text(encoding="utf-8")
    ]
    assert wrong == []
