"""Every ``skinlesion …`` and ``python -m edge …`` command in README.md and docs/*.md parses with the real
parsers (so a renamed flag or subcommand fails here), and the quick ones that need nothing outside the
clone run as written."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGUAGES = ("bash", "sh", "shell", "console", "")
PROGRAMS = {"skinlesion": "skinlesion", "python -m edge": "edge"}
PREFIXES = (".venv/bin/", "$ ")


def shell_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced block marked bash/sh/shell/console or unmarked."""
    blocks, current, start, lang = [], None, 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, start, lang = [], number + 1, line[3:].strip()
            else:
                if lang in SHELL_LANGUAGES:
                    blocks.append((start, current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, program, argv) for each documented command, continuation lines joined, comments dropped."""
    found = []
    for doc in DOCS:
        for start, lines in shell_blocks(doc.read_text(encoding="utf-8")):
            joined = "\n".join(lines).replace("\\\n", " ").splitlines()
            for offset, line in enumerate(joined):
                command = line.strip()
                for prefix in PREFIXES:
                    command = command.removeprefix(prefix)
                command = command.replace("python3 -m edge", "python -m edge")
                for program, key in PROGRAMS.items():
                    if command == program or command.startswith(program + " "):
                        words = shlex.split(command, comments=True)
                        argv = words[len(program.split()) :]
                        found.append((f"{doc.relative_to(REPO)}:{start + offset}", key, argv))
    return found


COMMANDS = documented_commands()


def _parse(program: str, argv: list[str]) -> str | None:
    """None when ``argv`` parses (or asks for --help / --version), else argparse's complaint."""
    if program == "skinlesion" and argv[:1] == ["app"]:
        gradio_main = pytest.importorskip(
            "gradio_app.__main__", reason="`skinlesion app` needs the [app] extra"
        )
        parse = gradio_main.parse_args
        argv = argv[1:]
    elif program == "skinlesion":
        from build.cli import build_parser

        parse = build_parser().parse_args
    else:
        from edge.cli import build_parser

        parse = build_parser().parse_args
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as exited:
        return None if exited.code == 0 else err.getvalue().strip().splitlines()[-1]
    return None


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 20
    assert {program for _, program, _ in COMMANDS} == set(PROGRAMS.values())


@pytest.mark.parametrize("where, program, argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_each_documented_command_parses(where, program, argv):
    problem = _parse(program, argv)
    assert problem is None, f"{where}: `{program} {' '.join(argv)}`: {problem}"


QUICK = ("classify", "predict")  # bench takes minutes per variant on 2 cores; camera needs a camera
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _skip_reason(argv: list[str]) -> str | None:
    if any("../shared" in a for a in argv):
        return "needs ../shared data"
    if not argv or argv[0] not in QUICK:
        return f"`{argv[0] if argv else ''}` needs run folders, a camera or minutes of work; its arguments are checked by parsing"
    return None


def _stand_ins(argv: list[str], folder: Path) -> list[str]:
    """The docs' example files, made real in ``folder``: photos, a photo folder, a bare model and labels."""
    from PIL import Image

    (folder / "photos").mkdir(exist_ok=True)
    Image.new("RGB", (600, 450), (180, 120, 110)).save(folder / "photos" / "spot.jpg")
    bundle = REPO / "models" / "pretrained" / "ham10000"
    for name in ("model_int8.tflite", "labels.txt"):
        if (bundle / name).is_file():
            (folder / name).write_bytes((bundle / name).read_bytes())
    out = []
    for arg in argv:
        if arg.startswith("~/"):
            arg = str(folder / arg[2:])
        elif arg.lower().endswith(IMAGE_SUFFIXES) and not (REPO / arg).exists():
            Image.new("RGB", (600, 450), (150, 90, 80)).save(folder / Path(arg).name)
        out.append(arg)
    return out


@pytest.mark.parametrize("where, program, argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_quick_documented_commands_run_as_written(where, program, argv, tmp_path):
    reason = _skip_reason(argv)
    if reason:
        pytest.skip(reason)
    if not (REPO / "models" / "pretrained" / "ham10000" / "model_card.json").is_file():
        pytest.skip("the shipped bundle is not in this checkout")
    base = [sys.executable, "-m", "build.cli"] if program == "skinlesion" else [sys.executable, "-m", "edge"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        base + _stand_ins(argv, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert result.returncode == 0, (
        f"{where}: `{program} {' '.join(argv)}` exit {result.returncode}\n{result.stderr[-2000:]}"
    )


def test_version_commands_run():
    for base in ([sys.executable, "-m", "build.cli"], [sys.executable, "-m", "edge"]):
        result = subprocess.run(
            base + ["--version"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0 and result.stdout.startswith("skinlesion "), result.stderr
