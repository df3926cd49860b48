"""The README and docs/ hold up: the Python example runs, quotes match the code, links lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from localservers.processes import START_PATIENCE_SECONDS, child_env
from server.app import instructions
from server.settings import Capture

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted([README, ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
README_MAX_LINES = 300

FENCED_BLOCK = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+).+?\1", flags=re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", flags=re.MULTILINE)


def python_example() -> str:
    section = README.read_text().split("## Using the memory layer from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "the section has no python block"
    return match[1]


def printed_output() -> str:
    section = README.read_text().split("## Using the memory layer from Python", 1)[1]
    match = re.search(r"It prints:\n\n```text\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None, "the section does not say what the example prints"
    return match[1]


def prose(page: Path) -> str:
    """The page without code, where a bracket or a # is not Markdown."""
    return CODE_SPAN.sub("", FENCED_BLOCK.sub("", page.read_text()))


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces made hyphens."""
    text = CODE_SPAN.sub(lambda span: span[0].strip("`"), heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    ids: set[str] = set()
    seen: Counter[str] = Counter()
    for heading in HEADING.findall(FENCED_BLOCK.sub("", page.read_text())):
        base = anchor(heading)
        ids.add(f"{base}-{seen[base]}" if seen[base] else base)  # a repeated heading gets -1, -2, ...
        seen[base] += 1
    return ids


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page)) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_python_api_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", python_example()],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == printed_output()


@pytest.mark.parametrize("capture", ["model", "hooks"])
def test_the_tools_page_quotes_the_servers_instructions_exactly(capture: Capture) -> None:
    assert f"```text\n{instructions(capture)}\n```" in (ROOT / "docs" / "tools.md").read_text()


def test_the_readme_is_at_most_300_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_an_existing_file_and_heading(page: Path) -> None:
    # Nothing is skipped: docs/benchmarks.md, which the benchmark program writes, must exist
    # too, so a README that links to it is only right once the page is there.
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_link_check_sees_links_and_headings() -> None:
    # A check that finds nothing would pass on any page.
    assert "docs/hosts.md" in relative_links(README)
    assert "docs/hosts.md#windows" in relative_links(README)
    assert {"quick-start", "settings-files", "using-the-memory-layer-from-python"} <= anchors(README)
    assert anchor("Tools: a `save_turn`, v2") == "tools-a-save_turn-v2"
    assert anchor("The `anthropic` SDK, v2") == "the-anthropic-sdk-v2"
