"""``flows.stage.run_fingerprint``: a training stage's resume key covers every dep dvc.yaml declares
(hashed as DVC hashes them) and its params, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from flows import stage

BIN = Path(sys.executable).parent


class _Params(BaseModel):
    """A stage section like the real ones: wiring paths with DVC-path defaults, and values."""

    input: Path = Path("data/in")
    checkpoints: Path = Path("checkpoints/toy")
    model_path: Path | None = None
    lr: float = 1e-3


@pytest.fixture
def toy_repo(tmp_path) -> Path:
    """A repository with code (flows/, components/), data and a dvc.yaml declaring both."""
    root = tmp_path / "repo"
    for rel, text in {
        "flows/toy.py": "from components.toy import model\n",
        "components/toy/__init__.py": "",
        "components/toy/model.py": "WIDTH = 4\n",
        "components/toy/loss.py": "def loss(x):\n    return x\n",
        "data/in/a.txt": "clip a\n",
        "data/in/sub/b.txt": "clip b\n",
        "other.txt": "not a dep\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "components" / "toy" / "__pycache__").mkdir()
    (root / "components" / "toy" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0\1")
    (root / ".dvcignore").write_text("__pycache__/\n")
    stages = {
        "toy": {
            "cmd": "echo trained > out.txt",
            "deps": ["flows/toy.py", "components/toy", "data/in"],
            "params": ["toy"],
            "outs": ["out.txt"],
        },
        "sweep": {
            "foreach": {"a": {"lr": 1}, "b": {"lr": 2}},
            "do": {"cmd": "echo ${key}", "deps": ["components/toy/${key}.py"], "params": ["sweep.${key}"]},
        },
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (root / "params.yaml").write_text("toy:\n  lr: 0.001\nsweep: {a: 1, b: 2}\n")
    return root


def _fp(root: Path, params: BaseModel | None = None, **kw) -> dict:
    return stage.run_fingerprint("toy", params or _Params(input=root / "data" / "in"), root=root, **kw)


def test_dep_hashes_are_the_ones_dvc_records_in_its_lock(toy_repo):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    for cmd in (
        ["git", "init", "-q"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "repro", "-q", "toy"],
    ):
        subprocess.run(cmd, cwd=toy_repo, env=env, check=True, capture_output=True)
    lock = yaml.safe_load((toy_repo / "dvc.lock").read_text())["stages"]["toy"]["deps"]
    recorded = {d["path"]: d["md5"] for d in lock}
    assert _fp(toy_repo)["deps"] == recorded  # files and folders, .dvcignore'd __pycache__ left out
    assert recorded["components/toy"].endswith(".dir")


def test_one_byte_in_any_declared_dep_changes_it_and_nothing_else_does(toy_repo):
    base = _fp(toy_repo)["fingerprint"]
    assert _fp(toy_repo)["fingerprint"] == base  # unchanged inputs: the same key (crash-resume)
    (toy_repo / "other.txt").write_text("still not a dep\n")
    (toy_repo / "components" / "toy" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0\2")
    assert _fp(toy_repo)["fingerprint"] == base
    for rel in ("components/toy/loss.py", "flows/toy.py", "data/in/sub/b.txt"):
        path = toy_repo / rel
        original = path.read_bytes()
        path.write_bytes(original + b"#")
        assert _fp(toy_repo)["fingerprint"] != base, rel
        path.write_bytes(original)
        assert _fp(toy_repo)["fingerprint"] == base, rel
    (toy_repo / "components" / "toy" / "new.py").write_text("")
    assert _fp(toy_repo)["fingerprint"] != base  # a new module in a declared folder


def test_params_count_but_where_files_live_does_not(toy_repo):
    base = _fp(toy_repo)
    assert base["params"] == {"lr": 1e-3, "model_path": None}
    assert (
        _fp(toy_repo, _Params(input=toy_repo / "data" / "in", lr=2e-3))["fingerprint"] != base["fingerprint"]
    )
    moved = _Params(input=toy_repo / "data" / "in", checkpoints=Path("/elsewhere"))
    assert _fp(toy_repo, moved)["fingerprint"] == base["fingerprint"]
    local_model = _Params(input=toy_repo / "data" / "in", model_path=Path("/models/t5"))
    assert _fp(toy_repo, local_model)["fingerprint"] != base["fingerprint"]


def test_data_deps_are_hashed_where_the_run_reads_them(toy_repo, tmp_path):
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / "a.txt").write_text("clip a\n")
    (copy / "sub").mkdir()
    (copy / "sub" / "b.txt").write_text("clip b\n")
    same = _fp(toy_repo, _Params(input=copy))
    assert same["fingerprint"] == _fp(toy_repo)["fingerprint"]  # same content, other folder
    (copy / "a.txt").write_text("clip A\n")
    assert _fp(toy_repo, _Params(input=copy))["fingerprint"] != same["fingerprint"]
    # an explicit location wins over the params field
    explicit = _fp(toy_repo, _Params(input=copy), paths={"data/in": toy_repo / "data" / "in"})
    assert explicit["fingerprint"] == same["fingerprint"]
    gone = _fp(toy_repo, _Params(input=tmp_path / "nothing"))
    assert gone["deps"]["data/in"] == "missing"


def test_foreach_stage_resolves_its_key(toy_repo):
    (toy_repo / "components" / "toy" / "a.py").write_text("A = 1\n")
    a = stage.run_fingerprint("sweep@a", _Params(), root=toy_repo)
    assert list(a["deps"]) == ["components/toy/a.py"] and a["deps"]["components/toy/a.py"] != "missing"
    with pytest.raises(KeyError, match="no stage 'nope'"):
        stage.run_fingerprint("nope", _Params(), root=toy_repo)


def test_checkpoint_folder_removes_other_runs_but_keeps_caches(tmp_path, toy_repo):
    root = tmp_path / "checkpoints"
    (root / "0123456789ab").mkdir(parents=True)  # another run's checkpoints
    (root / "cache").mkdir()
    (root / "cache" / "x.safetensors").write_bytes(b"1")
    (root / "variant.json").write_text("{}")
    fp = _fp(toy_repo)
    folder = stage.checkpoint_folder(root, fp, keep={"cache"})
    assert folder == root / fp["fingerprint"][:12] and folder.is_dir()
    assert sorted(p.name for p in root.iterdir()) == sorted([folder.name, "cache", "variant.json"])
    assert yaml.safe_load((folder / "fingerprint.json").read_text())["deps"] == fp["deps"]
