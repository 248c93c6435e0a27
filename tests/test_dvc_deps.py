"""dvc.yaml deps cover the code each stage runs: the import closure of ``flows/<stage>.py`` inside
``flows/`` and ``components/`` (imports inside functions included). A code change then reruns the
stages that import it — and, through the run fingerprint (``flows.stage.run_fingerprint``), makes
their training start over instead of resuming checkpoints of other code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "components")
# Computed imports that do not pull in their whole package: the config loader imports the room config
# leaf of the section a stage asks for, and every flow imports its own params class by name (so that
# leaf is in the closure).
SELECTIVE_DYNAMIC = {"components"}


def _module_file(module: str) -> Path | None:
    """The file of a dotted module name inside the repo's packages, or None."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


_MODULE_NAME = re.compile(r"(components|flows)(\.[A-Za-z_]\w*)+")


def _package_inits(module: str) -> list[Path]:
    """``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first."""
    parts = module.split(".")
    inits = [REPO.joinpath(*parts[:k], "__init__.py") for k in range(1, len(parts))]
    return [p for p in inits if p.is_file()]


def _dynamic_prefix(node: ast.Call) -> str | None:
    """``importlib.import_module(f"components.pkg.{name}")`` -> ``components.pkg`` (a computed import)."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called != "import_module" or not node.args or not isinstance(node.args[0], ast.JoinedStr):
        return None
    head = node.args[0].values[0] if node.args[0].values else None
    if isinstance(head, ast.Constant) and str(head.value).endswith("."):
        prefix = str(head.value)[:-1]
        return None if prefix in SELECTIVE_DYNAMIC else prefix
    return None


def _imports(path: Path) -> set[str]:
    """Dotted names a module imports anywhere in its body (functions too), relative ones resolved;
    a computed ``import_module(f"pkg.{x}")`` imports every module of ``pkg``."""
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from (for __init__ too)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _MODULE_NAME.fullmatch(node.value)
        ):
            names.add(node.value)  # a registry of module names imported later (the backbone specs)
        elif isinstance(node, ast.Call) and (prefix := _dynamic_prefix(node)):
            pkg = REPO.joinpath(*prefix.split("."))
            names.update(f"{prefix}.{f.stem}" for f in pkg.glob("*.py"))
    return names


def import_closure(entry: Path) -> set[Path]:
    """Every repo file that running ``entry`` can import (statically visible imports)."""
    seen: set[Path] = set()
    todo = [entry, *_package_inits(".".join(entry.relative_to(REPO).with_suffix("").parts))]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            target = _module_file(name)
            if target is not None:
                todo += [target, *_package_inits(name)]
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _entry(stage: dict) -> Path:
    cmd = (stage.get("do") or stage)["cmd"]
    module = cmd.split("-m", 1)[1].split()[0]
    return _module_file(module)


def _deps(stage: dict) -> list[str]:
    return [str(d) for d in (stage.get("do") or stage)["deps"]]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_deps_cover_the_import_closure_of_the_stage_flow(name):
    stage = _stages()[name]
    deps = [REPO / d for d in _deps(stage)]
    missing = sorted(
        str(f.relative_to(REPO))
        for f in import_closure(_entry(stage))
        if not any(f == d or d in f.parents for d in deps)
    )
    assert not missing, f"dvc.yaml stage {name!r} does not list files its flow imports: {missing}"


def test_closure_follows_function_level_and_relative_imports(tmp_path):
    """The closure sees an import inside a function (flows import lazily) and package inits."""
    closure = import_closure(REPO / "flows" / "train_dit.py")
    rel = {str(p.relative_to(REPO)) for p in closure}
    assert "flows/stage.py" in rel and "flows/__init__.py" in rel
    assert "components/dit/experiment.py" in rel  # imported inside the flow function
    assert "components/__init__.py" in rel or not (REPO / "components" / "__init__.py").exists()


def _py_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_deps_hold_no_code_the_stage_never_imports(name):
    """Every module under a code dep is in the closure: a change elsewhere reruns no stage."""
    stage = _stages()[name]
    closure = import_closure(_entry(stage))
    for dep in _deps(stage):
        if dep.split("/")[0] not in PACKAGES:
            continue
        unused = [str(f.relative_to(REPO)) for f in _py_files(REPO / dep) if f not in closure]
        assert not unused, f"dvc.yaml stage {name!r} lists {dep}, whose {unused} its flow never imports"


def code_deps(entry: Path) -> list[str]:
    """The closure as dvc.yaml deps: a package folder when every module of it is imported (its data
    files come with it), else its files one by one."""
    closure = import_closure(entry)
    out: list[str] = []

    def visit(folder: Path) -> None:
        files = _py_files(folder)
        if files and all(f in closure for f in files):
            out.append(str(folder.relative_to(REPO)))
            return
        out.extend(str(f.relative_to(REPO)) for f in sorted(folder.glob("*.py")) if f in closure)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
            visit(sub)

    for pkg in PACKAGES:
        visit(REPO / pkg)
    return out


def test_code_deps_list_a_folder_only_when_all_of_it_is_imported():
    deps = code_deps(REPO / "flows" / "evaluate.py")
    assert "components/evaluation" in deps  # every metric plug-in is imported by name
    assert "flows/evaluate.py" in deps and "flows/train_dit.py" not in deps
    assert not any(d.startswith("components/registry") for d in deps)


def write_code_deps(dvc_yaml: Path = REPO / "dvc.yaml") -> str:
    """dvc.yaml with every stage's code deps replaced by :func:`code_deps` (data deps, their order and
    comments kept); the text is returned and written back."""
    import re

    stages = _stages()
    out: list[str] = []
    stage = indent = None
    in_deps = inserted = False
    for line in dvc_yaml.read_text().splitlines(keepends=True):
        if (m := re.match(r"^  (\w+):\s*(#.*)?$", line)) and m.group(1) in stages:
            stage, in_deps = m.group(1), False
        if m := re.match(r"^(\s+)deps:\s*$", line):
            in_deps, inserted, indent = True, False, m.group(1) + "  "
            out.append(line)
            continue
        if in_deps:
            item = re.match(r"^(\s+)- (\S+)", line)
            if item and len(item.group(1)) == len(indent):
                if not inserted:
                    out += [f"{indent}- {d}\n" for d in code_deps(_entry(stages[stage]))]
                    inserted = True
                if item.group(2).split("/")[0] not in PACKAGES:
                    out.append(line)
                continue
            in_deps = False
        out.append(line)
    text = "".join(out)
    dvc_yaml.write_text(text)
    return text


if __name__ == "__main__":  # `python -m tests.test_dvc_deps [--write]`: print (or write) the code deps
    import sys

    if "--write" in sys.argv:
        write_code_deps()
        print("dvc.yaml: code deps rewritten from the import closures")
    else:
        for stage_name, stage_def in _stages().items():
            print(f"{stage_name}:")
            print("\n".join(f"  - {d}" for d in code_deps(_entry(stage_def))))


def test_bytecode_caches_in_code_folders_are_not_dependencies(tmp_path):
    """Stages list code folders (``components/<room>``) as deps; the ``__pycache__`` a process writes
    there on import must not change their hash, or whichever stage imports a module first makes every
    earlier stage look changed (found by the team nightly on a fresh clone: ``dvc status`` after the run
    listed ``components/evaluation`` modified for an ablate stage). Checked with DVC itself on a copy of
    the repository's .dvcignore."""
    import shutil
    import subprocess
    import sys

    dvc = str(Path(sys.executable).with_name("dvc"))
    repo = tmp_path / "repo"
    (repo / "code").mkdir(parents=True)
    shutil.copy(REPO / ".dvcignore", repo / ".dvcignore")
    (repo / "code" / "a.py").write_text("x = 1\n")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "stage", "add", "-q", "-n", "s", "-d", "code", "-o", "out.txt", "echo hi > out.txt")
    run(dvc, "repro", "-q")
    (repo / "code" / "__pycache__").mkdir()
    (repo / "code" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert "Data and pipelines are up to date" in run(dvc, "status")
    (repo / "code" / "a.py").write_text("x = 2\n")  # a real code change still counts
    assert "modified:           code" in run(dvc, "status")
