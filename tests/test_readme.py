"""The README's samples are the real thing: its Python example runs, its texts match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from localservers.processes import child_env
from server.app import INSTRUCTIONS

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    section = README.read_text().split("## Using the memory layer from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "the section has no python block"
    return match[1]


def test_the_python_api_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", python_example()],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "True True\nuser Hej!\n"
    assert "It prints `True True` and `user Hej!`." in README.read_text()


def test_the_readme_quotes_the_servers_instructions_exactly() -> None:
    assert f"```text\n{INSTRUCTIONS}\n```" in README.read_text()


def test_the_readme_names_no_setting_file_flag_the_cli_lacks() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "--env-file PATH" in finished.stdout
    assert "--env-file PATH" in README.read_text()
