"""The README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_cmd = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci_cmd) == 1
    readme = (ROOT / "README.md").read_text()
    assert ci_cmd[0] in readme.splitlines()


def test_readme_has_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in readme if line.startswith("python3 -m venv .venv && . .venv/bin/activate")]
    assert len(commands) == 2
    assert "python -m pytest" in commands[1]
