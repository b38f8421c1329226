"""The README is the front door: short, its configuration table true to bot/config.py, and
every link in it and in docs/ leading somewhere."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 320
_NAME = re.compile(r"`([A-Z][A-Z0-9_]*)`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable asked for, however it is asked."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return super().__contains__(key)


def variables_read_by_config() -> set[str]:
    """Every environment variable `Settings.from_env` reads: from an empty environment (which
    it refuses, after reading everything) and from a minimal valid one."""
    asked: set[str] = set()
    for values in ({}, {"SLACK_BOT_TOKEN": "xoxb-readme", "SLACK_SIGNING_SECRET": "secret"}):
        env = RecordingEnv(values)
        with contextlib.suppress(ConfigError):
            Settings.from_env(env)
        asked |= env.asked
    return asked


def configuration_table_names() -> list[str]:
    """The names in the first column of the README's configuration table, in order, repeats
    kept (a row may name several, as `A`, `B`)."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "## Configuration")
    names: list[str] = []
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        first_cell = line.split("|")[1]
        if set(first_cell.strip()) <= {"-", ":"} or first_cell.strip() == "variable":
            continue
        names += _NAME.findall(first_cell)
    return names


def test_the_table_names_exactly_the_variables_config_reads() -> None:
    in_table = set(configuration_table_names())
    read = variables_read_by_config()
    assert read, "Settings.from_env asked for no variable: the recording environment is blind"
    missing_from_table = sorted(read - in_table)
    not_read = sorted(in_table - read)
    assert not missing_from_table and not not_read, (
        f"read by bot/config.py but not in the README's table: {missing_from_table}; "
        f"in the table but not read by bot/config.py: {not_read}"
    )


def test_each_variable_has_one_row() -> None:
    names = configuration_table_names()
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert not repeated, f"more than one row in the README's table: {repeated}"


def test_the_readme_is_a_front_door_not_a_manual() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move details to docs/"
    )


def test_env_example_names_every_variable_of_the_table() -> None:
    example = (ROOT / ".env.example").read_text()
    absent = [
        name
        for name in configuration_table_names()
        if not re.search(rf"^#? ?{name}=", example, re.M)
    ]
    assert not absent, f".env.example does not name: {absent}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside fenced code."""
    targets: list[str] = []
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code:
            targets += _LINK.findall(line)
    return targets


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken: list[str] = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_docs_folder_has_the_pages_the_readme_promises() -> None:
    names = {page.name for page in DOCS}
    assert {
        "architecture.md",
        "choices.md",
        "reliability.md",
        "performance.md",
        "development.md",
    } <= names
