"""Lineage tags from dvc.lock, git and the MLflow runs of each stage (real sqlite store)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from components.registry.lineage import (
    MAX_TAG_VALUE,
    LineageError,
    git_commit,
    latest_stage_runs,
    lineage_tags,
    read_dvc_lock,
)

LOCK = {
    "schema": "2.0",
    "stages": {
        "ingest": {
            "cmd": "python -m flows.ingest",
            "deps": [
                {"path": "components/data", "hash": "md5", "md5": "aaa.dir", "size": 1, "nfiles": 2},
                {"path": "flows/ingest.py", "hash": "md5", "md5": "bbb", "size": 3},
            ],
            "params": {"params.yaml": {"ingest": {"seed": 0, "clips": 24}}},
            "outs": [{"path": "data/ingest", "hash": "md5", "md5": "ccc.dir"}],
        },
        "train@small": {
            "cmd": "python -m flows.train_dit",
            "deps": [{"path": "data/ingest", "hash": "md5", "md5": "ccc.dir"}],
            "params": {"params.yaml": {"train_dit": {"lr": 0.001}}},
            "outs": [{"path": "models/dit", "hash": "md5", "md5": "ddd.dir"}],
        },
    },
}


def write_lock(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_read_dvc_lock_hashes_deps_outs_and_params(tmp_path):
    lock = write_lock(tmp_path / "dvc.lock", LOCK)
    got = read_dvc_lock(lock)
    assert got["ingest"]["deps"] == {"components/data": "aaa.dir", "flows/ingest.py": "bbb"}
    assert got["ingest"]["outs"] == {"data/ingest": "ccc.dir"}
    # the params digest follows the values, not the key order
    reordered = json.loads(json.dumps(LOCK))
    reordered["stages"]["ingest"]["params"]["params.yaml"]["ingest"] = {"clips": 24, "seed": 0}
    assert (
        read_dvc_lock(write_lock(tmp_path / "b.lock", reordered))["ingest"]["params_md5"]
        == got["ingest"]["params_md5"]
    )
    changed = json.loads(json.dumps(LOCK))
    changed["stages"]["ingest"]["params"]["params.yaml"]["ingest"]["seed"] = 1
    assert (
        read_dvc_lock(write_lock(tmp_path / "c.lock", changed))["ingest"]["params_md5"]
        != got["ingest"]["params_md5"]
    )
    assert read_dvc_lock(tmp_path / "absent.lock") == {}


def test_bad_dvc_lock_raises_naming_the_file(tmp_path):
    bad = tmp_path / "dvc.lock"
    bad.write_text("stages: [unclosed\n")
    with pytest.raises(LineageError, match=r"dvc\.lock is not valid YAML.*git checkout dvc\.lock"):
        read_dvc_lock(bad)
    bad.write_text("stages: [a, b]\n")
    with pytest.raises(LineageError, match="'stages' must be a mapping"):
        read_dvc_lock(bad)


def test_git_commit_clean_dirty_and_outside_git(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "metrics").mkdir()
    for name in ("code.py", "dvc.lock", "metrics/m.json"):
        (tmp_path / name).write_text("1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == sha
    (tmp_path / "dvc.lock").write_text("2\n")
    (tmp_path / "metrics/m.json").write_text("2\n")
    assert git_commit(tmp_path) == sha  # DVC's own rewrites do not make the tree dirty
    (tmp_path / "code.py").write_text("2\n")
    assert git_commit(tmp_path) == sha + "-dirty"


def test_lineage_tags_with_latest_stage_runs(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert latest_stage_runs(["ingest"], uri) == {}
    assert not (tmp_path / "mlflow.db").exists()  # a lookup never creates an empty store
    client = MlflowClient(uri)
    exp = client.create_experiment("mosa", artifact_location=(tmp_path / "art").as_uri())
    other = client.create_experiment("other", artifact_location=(tmp_path / "art2").as_uri())
    old = client.create_run(exp, tags={"stage": "ingest"}, start_time=1_000)
    new = client.create_run(exp, tags={"stage": "ingest"}, start_time=2_000)
    client.create_run(other, tags={"stage": "ingest"}, start_time=3_000)  # another experiment: ignored
    train = client.create_run(exp, tags={"stage": "train@small"}, start_time=1_500)
    reg = client.create_run(exp, tags={"stage": "register"}, start_time=2_500)
    assert old.info.run_id != new.info.run_id

    lock = write_lock(tmp_path / "dvc.lock", LOCK)
    tags = lineage_tags(
        profile="cogvideox-5b",
        tracking_uri=uri,
        lock_path=lock,
        commit="abc123",
        stages=["register", "evaluate"],
    )
    assert tags["lineage.git_commit"] == "abc123"
    assert tags["lineage.profile"] == "cogvideox-5b"
    assert tags["lineage.dvc_lock_md5"] == hashlib.md5(lock.read_bytes()).hexdigest()
    assert json.loads(tags["lineage.dvc.ingest.deps"]) == {
        "components/data": "aaa.dir",
        "flows/ingest.py": "bbb",
    }
    assert json.loads(tags["lineage.dvc.train_small.outs"]) == {
        "models/dit": "ddd.dir"
    }  # '@' is not a tag char
    assert tags["lineage.dvc.ingest.params_md5"] == read_dvc_lock(lock)["ingest"]["params_md5"]
    assert tags["lineage.run.ingest"] == new.info.run_id
    assert tags["lineage.run.train_small"] == train.info.run_id
    assert tags["lineage.run.register"] == reg.info.run_id
    assert "lineage.run.evaluate" not in tags  # no run yet
    # every key is a valid MLflow tag key and every value fits: set them all on a model version
    client.create_registered_model("m")
    mv = client.create_model_version("m", "s3://b/m", tags=tags)
    assert client.get_model_version("m", mv.version).tags == tags


def test_overlong_dependency_list_becomes_a_digest(tmp_path):
    many = json.loads(json.dumps(LOCK))
    many["stages"]["ingest"]["deps"] = [
        {"path": f"data/file_{i:05d}.mp4", "md5": "f" * 32} for i in range(400)
    ]
    lock = write_lock(tmp_path / "dvc.lock", many)
    tags = lineage_tags(tracking_uri=f"sqlite:///{tmp_path / 'none.db'}", lock_path=lock, commit="x")
    value = tags["lineage.dvc.ingest.deps"]
    assert len(value) <= MAX_TAG_VALUE and value.startswith("md5:") and "400 entries" in value
    assert tags["lineage.dvc_lock_md5"] != "none" and tags["lineage.profile"] == "default"
