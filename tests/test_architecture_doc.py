"""ARCHITECTURE.md and README's rooms table match the code: the rooms in the layering's order, and
every file and ``file::name`` the page points at exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.test_layering import LAYERS

REPO = Path(__file__).resolve().parents[1]
DOCS = ("ARCHITECTURE.md", "README.md")
ROOM_ROW = re.compile(r"^\|(?:\s*\d+\s*\|)?\s*`(\w+)`(?: \(a module\))?\s*\|", re.M)
CODE_REF = re.compile(r"`((?:components|flows|tests)/[\w/.]+\.py)(?:::(\w+)(?:\.\w+)?)?")


def rooms_table(text: str) -> list[str]:
    """Room names in the order the page's rooms table lists them (rows whose first cell is a room)."""
    return [name for name in ROOM_ROW.findall(text) if name in LAYERS]


def top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize("doc", DOCS)
def test_rooms_table_lists_every_room_in_layering_order(doc: str) -> None:
    assert rooms_table((REPO / doc).read_text(encoding="utf-8")) == list(LAYERS)


@pytest.mark.parametrize("doc", DOCS)
def test_every_code_reference_exists(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    missing = []
    for path, name in CODE_REF.findall(text):
        file = REPO / path
        if not file.is_file():
            missing.append(path)
        elif name and name not in top_level_names(file):
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc} points at code that is not there: {missing}"


def test_the_checks_catch_a_stale_page() -> None:
    swapped = "| `io` | x |\n| `params` (a module) | y |\n" + "".join(f"| `{r}` | z |\n" for r in LAYERS[2:])
    assert rooms_table(swapped) != list(LAYERS)
    stale = CODE_REF.findall("see `components/nowhere.py` and `flows/stage.py::no_such_function`")
    assert stale == [("components/nowhere.py", ""), ("flows/stage.py", "no_such_function")]
    assert "no_such_function" not in top_level_names(REPO / "flows/stage.py")
