"""Stage plumbing helpers: param flattening, dvc.lock hashes, tracking URI, commit tags."""

from __future__ import annotations

import subprocess

from flows import stage


def test_flatten_nested_params_to_dotted_keys():
    flat = stage.flatten({"clip": {"frames": 17, "fit": "auto"}, "sources": [{"kind": "demo"}], "seed": 0})
    assert flat == {"clip.frames": 17, "clip.fit": "auto", "sources": '[{"kind": "demo"}]', "seed": 0}


def test_dvc_dep_hashes_read_from_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  ingest:\n    cmd: python -m flows.ingest\n    deps:\n"
        "    - path: components/data\n      hash: md5\n      md5: abc.dir\n"
        "    - path: flows/ingest.py\n      md5: def\n"
    )
    assert stage.dvc_dep_hashes("ingest", lock) == {"components/data": "abc.dir", "flows/ingest.py": "def"}
    assert stage.dvc_dep_hashes("annotate", lock) == {}
    assert stage.dvc_dep_hashes("ingest", tmp_path / "missing.lock") == {}


def test_tracking_uri_default_and_override(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert stage.tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert stage.tracking_uri() == "http://127.0.0.1:5000"


def test_git_commit_ignores_dvc_outputs_but_not_code(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "ingest.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)
    clean = stage.git_commit()
    assert len(clean) == 40
    (tmp_path / "metrics" / "ingest.json").unlink()  # what DVC does before running a stage
    assert stage.git_commit() == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert stage.git_commit() == clean + "-dirty"


def test_rank_zero(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert stage.is_rank_zero()
    monkeypatch.setenv("RANK", "1")
    assert not stage.is_rank_zero()


def test_find_stage_run_picks_latest_run_of_the_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert stage.find_stage_run("ingest", uri=uri) is None  # no store yet: none is created
    assert not (tmp_path / "mlflow.db").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("mosa")
    old = client.create_run(exp, tags={"stage": "ingest"}, start_time=1_000_000)
    new = client.create_run(exp, tags={"stage": "ingest"}, start_time=2_000_000)
    client.create_run(exp, tags={"stage": "annotate"}, start_time=3_000_000)
    assert stage.find_stage_run("ingest", uri=uri) == (new.info.run_id, exp)
    assert old.info.run_id != new.info.run_id
    assert stage.find_stage_run("ingest", since=1_500, uri=uri) == (new.info.run_id, exp)
    assert stage.find_stage_run("ingest", since=2_500, uri=uri) is None  # ran now but logged nothing
    assert stage.find_stage_run("evaluate", uri=uri) is None


def _mini_repo(root):
    (root / "components").mkdir()
    (root / "components" / "a.py").write_text("x = 1\n")
    (root / "data").mkdir()
    (root / "data" / "clip.txt").write_text("clip 1\n")
    (root / "dvc.yaml").write_text(
        "stages:\n  annotate:\n    cmd: python -m flows.annotate\n"
        "    deps:\n      - components/a.py\n      - data\n"
    )


def test_code_fingerprint_follows_the_code_deps_not_the_data(tmp_path):
    _mini_repo(tmp_path)
    first = stage.code_fingerprint("annotate", tmp_path)
    assert stage.code_fingerprint("annotate", tmp_path) == first
    (tmp_path / "data" / "clip.txt").write_text("clip 2\n")  # other data: per-clip reuse stays valid
    assert stage.code_fingerprint("annotate", tmp_path) == first
    (tmp_path / "components" / "a.py").write_text("x = 1  # a comment is a code change\n")
    assert stage.code_fingerprint("annotate", tmp_path) != first


def test_shared_writers_curve_table_and_quarantine(tmp_path):
    csv_text = stage.curve_csv([{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25, "mae": 0.1}])
    assert csv_text.splitlines() == ["step,loss,mae", "1,0.5,", "2,0.25,0.1"]
    table = stage.metrics_table("ingest", {"kept": 3, "nested": {"a": 1}}, skip_dicts=True)
    assert table == "# ingest\n\n| metric | value |\n|---|---|\n| kept | 3 |\n"
    assert "| nested |" in stage.metrics_table("ingest", {"nested": {"a": 1}})
    path = stage.write_quarantine(tmp_path, [{"reason": "corrupt", "clip_id": "b"}])
    assert path.read_text() == '{"clip_id": "b", "reason": "corrupt"}\n'
    assert stage.write_quarantine(tmp_path, []).read_text() == ""
