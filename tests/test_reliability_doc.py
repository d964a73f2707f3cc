"""docs/reliability.md stays true: every test a row names exists, and the defaults the docs
state are the commands' defaults."""

import ast
import re
from pathlib import Path

import pytest

from neurophase.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reliability.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def table_rows() -> list[str]:
    return [line for line in PAGE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| bad input") and not line.startswith("|---")]


def test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


test_functions.__test__ = False  # a helper, not a test


def test_every_row_names_a_test():
    rows = table_rows()
    assert len(rows) >= 20
    for row in rows:
        assert TEST_REFERENCE.search(row.split("|")[-2]), f"row without a test: {row}"


@pytest.mark.parametrize("path, name", sorted({m.groups() for m in TEST_REFERENCE.finditer(PAGE.read_text(
    encoding="utf-8"))}))
def test_every_named_test_exists(path, name):
    file = ROOT / path
    assert file.is_file(), f"docs/reliability.md names {path}, which does not exist"
    assert name in test_functions(file), f"docs/reliability.md names {path}::{name}, which does not exist"


def test_documented_length_defaults_match_the_commands():
    text = (ROOT / "docs" / "cosim.md").read_text(encoding="utf-8")
    sim = main.commands["sim"]
    for command in ("mvm", "drift"):
        documented = re.search(rf"neurophase sim {command}\s+\[--length (\d+)\]", text)
        assert documented, f"docs/cosim.md does not state the --length default of sim {command}"
        option = next(p for p in sim.commands[command].params if p.name == "length")
        assert option.default == int(documented[1]), command
