"""The import layering of ``components/`` and ``flows/``, read from the code (an ``ast`` walk, imports
inside functions included).

Rooms are ordered bottom to top (``LAYERS``); a room imports only rooms below it, config leaves
(``components/<room>/config.py``) import only pydantic, the standard library and lower config leaves,
no room imports ``components.config`` (the params loader sits above every room; rooms take their own
config classes), no flow but ``flows/stage.py`` imports ``mlflow``, and no module takes part in an
import circle. A function-level import of a repo module (in a room or a flow) says why in a ``# lazy:``
comment on it or heading its group of imports."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# bottom to top; ``components.params`` (the strict pydantic base) sits under every room, flows above all
LAYERS: tuple[str, ...] = (
    "params",
    "io",
    "training",
    "motion",
    "synthetic",
    "annotation",
    "data",
    "losses",
    "backbone",
    "base",
    "dit",
    "evaluation",
    "registry",
    "config",
)
RANK = {room: k for k, room in enumerate(LAYERS)}
CONFIG_LEAF_OK = {"__future__", "pydantic", "typing", "pathlib", "math", "collections", "dataclasses", "enum"}


@dataclass(frozen=True)
class Import:
    source: str  # dotted module doing the import
    target: str  # dotted module imported
    line: int
    lazy: bool  # inside a function or class body
    commented: bool  # a ``# lazy:`` comment on the line or the one above


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = REPO) -> Iterator[Import]:
    """Every import statement in ``path`` (relative ones resolved), with where it sits."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    tree = ast.parse(text)
    top = {id(n) for n in tree.body}
    guarded = set()  # `if TYPE_CHECKING:` / try blocks at module level count as top level
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            guarded.update(id(n) for n in ast.walk(node))
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base]
            # `from components.x import module`: the submodule is the target
            for a in node.names:
                sub = f"{base}.{a.name}"
                if (root / Path(*sub.split("."))).with_suffix(".py").is_file():
                    targets.append(sub)
        else:
            continue
        commented = _lazy_reason_above(lines, node.lineno - 1)
        lazy = id(node) not in top and id(node) not in guarded
        for t in targets:
            yield Import(source, t, node.lineno, lazy, commented)


def _lazy_reason_above(lines: list[str], index: int) -> bool:
    """A ``# lazy:`` comment on the import's line or heading the run of imports, comments and blank
    lines it sits in (one reason covers a group of imports)."""
    if "# lazy:" in lines[index]:
        return True
    k = index - 1
    while k >= 0:
        text = lines[k].strip()
        if text.startswith("# lazy:"):
            return True
        if not (text == "" or text.startswith(("#", "from ", "import ", ")")) or text.endswith(",")):
            return False
        k -= 1
    return False


def repo_files(root: Path = REPO) -> list[Path]:
    return sorted(p for d in ("components", "flows") for p in (root / d).rglob("*.py"))


def room_of(module: str) -> str | None:
    """``components.dit.mosa`` -> ``dit``; ``flows.x`` -> ``flows``; other packages -> None."""
    parts = module.split(".")
    if parts[0] == "flows":
        return "flows"
    if parts[0] == "components" and len(parts) > 1:
        return parts[1]
    return None


def is_config_leaf(module: str) -> bool:
    parts = module.split(".")
    return module == "components.params" or (
        parts[0] == "components" and parts[-1] == "config" and len(parts) == 3
    )


def violations(root: Path = REPO) -> dict[str, list[str]]:
    """Layering problems by kind (empty lists when the code is clean)."""
    found: dict[str, list[str]] = {
        "upward": [],
        "config": [],
        "leaf": [],
        "mlflow": [],
        "lazy": [],
        "cycle": [],
    }
    graph: dict[str, set[str]] = {}
    for path in repo_files(root):
        where = str(path.relative_to(root))
        for imp in imports_of(path, root):
            src, dst = room_of(imp.source), room_of(imp.target)
            top_pkg = imp.target.split(".")[0]
            if dst is not None:
                graph.setdefault(imp.source, set()).add(imp.target)
            if src == "flows":
                if top_pkg == "mlflow" and where != "flows/stage.py":
                    found["mlflow"].append(f"{where}:{imp.line} imports {imp.target} (log through StageRun)")
                if dst is not None and imp.lazy and not imp.commented:
                    found["lazy"].append(
                        f"{where}:{imp.line} imports {imp.target} in a function, no '# lazy:' reason"
                    )
                continue
            if src is None:
                continue
            if is_config_leaf(imp.source) and not (is_config_leaf(imp.target) or top_pkg in CONFIG_LEAF_OK):
                found["leaf"].append(
                    f"{where}:{imp.line} imports {imp.target} (config leaves: pydantic, stdlib, leaves)"
                )
            if dst is None or dst == src:
                if dst == src and imp.lazy and not imp.commented:
                    found["lazy"].append(
                        f"{where}:{imp.line} imports {imp.target} in a function, no '# lazy:' reason"
                    )
                continue
            if dst == "flows":
                found["upward"].append(
                    f"{where}:{imp.line} imports {imp.target} (components never import flows)"
                )
                continue
            if dst == "config" and src != "config":
                found["config"].append(
                    f"{where}:{imp.line} imports {imp.target} (take the room's own config class)"
                )
                continue
            if dst not in RANK or src not in RANK:
                found["upward"].append(
                    f"{where}:{imp.line}: room {dst if dst not in RANK else src!r} is not in LAYERS"
                )
                continue
            if RANK[dst] >= RANK[src]:
                found["upward"].append(
                    f"{where}:{imp.line} imports {imp.target} (room {src} sits below {dst})"
                )
            elif imp.lazy and not imp.commented:
                found["lazy"].append(
                    f"{where}:{imp.line} imports {imp.target} in a function, no '# lazy:' reason"
                )
    found["cycle"] = [" -> ".join(c) for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    sys.setrecursionlimit(10_000)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("kind", ["upward", "config", "leaf", "mlflow", "lazy", "cycle"])
def test_layering_holds(kind: str) -> None:
    problems = violations()[kind]
    assert not problems, f"{len(problems)} {kind} import problem(s):\n" + "\n".join(problems)
