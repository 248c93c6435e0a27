"""Promotion on a real MLflow sqlite registry: aliases moved by the gate's decisions, rollback, copy,
concurrency, and the champion served through ``models:/mosa-dit@champion`` in a fresh process."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from components.registry.config import GateConfig, GateRule
from components.registry.promote import (
    CHAMPION,
    PREVIOUS,
    PREVIOUS_TAG,
    RegistryError,
    RegistryLockTimeout,
    aliases,
    client_for,
    copy_to_prod,
    lock_file_for,
    promote,
    registry_lock,
    rollback,
)

REPO = Path(__file__).resolve().parents[3]
GATE = GateConfig(rules=[GateRule(metric="score", direction="higher")])


# ------------------------------------------------------------------------------- real registry


def add_version(uri: str, name: str, score: float | None) -> str:
    """A model version carrying only a ``metric.score`` tag (the gate reads nothing else)."""
    client, _ = client_for(uri)
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    tags = {} if score is None else {"metric.score": repr(score)}
    return str(client.create_model_version(name, source="s3://bucket/model", tags=tags).version)


def test_promotion_lifecycle_first_worse_better_rollback(store, tmp_path):
    client, _ = client_for(store)
    v1 = add_version(store, "mosa-dit", 0.5)
    r1 = promote("mosa-dit", v1, GATE, tracking_uri=store, report_path=tmp_path / "r1" / "decision.md")
    assert r1.decision.promote and r1.champion_before is None and r1.champion_after == v1
    assert aliases(client, "mosa-dit") == {CHAMPION: v1}
    assert (tmp_path / "r1" / "decision.md").read_text() == r1.markdown

    v2 = add_version(store, "mosa-dit", 0.4)
    r2 = promote("mosa-dit", v2, GATE, tracking_uri=store)
    assert not r2.decision.promote and r2.champion_after == v1
    assert aliases(client, "mosa-dit") == {CHAMPION: v1}
    tags = client.get_model_version("mosa-dit", v2).tags
    assert tags["gate.decision"] == "rejected" and "score 0.4 vs champion 0.5" in tags["gate.reason"]
    assert "Decision: not promoted" in tags["gate.decision_md"]

    v3 = add_version(store, "mosa-dit", 0.7)
    r3 = promote("mosa-dit", v3, GATE, tracking_uri=store)
    assert r3.decision.promote and (r3.champion_before, r3.champion_after, r3.previous_champion) == (
        v1,
        v3,
        v1,
    )
    assert aliases(client, "mosa-dit") == {CHAMPION: v3, PREVIOUS: v1}
    assert client.get_model_version("mosa-dit", v3).tags[PREVIOUS_TAG] == v1

    again = promote("mosa-dit", v3, GATE, tracking_uri=store)
    assert not again.decision.promote and "already the champion" in again.decision.reason

    back = rollback("mosa-dit", tracking_uri=store)
    assert (back.champion_before, back.champion_after, back.previous_champion) == (v3, v1, None)
    assert aliases(client, "mosa-dit") == {CHAMPION: v1}
    with pytest.raises(RegistryError, match="no 'previous-champion' alias: nothing to roll back to"):
        rollback("mosa-dit", tracking_uri=store)


def test_rollback_walks_back_through_history(store):
    client, _ = client_for(store)
    versions = [add_version(store, "m", s) for s in (0.1, 0.2, 0.3)]
    for v in versions:
        assert promote("m", v, GATE, tracking_uri=store).decision.promote
    assert aliases(client, "m") == {CHAMPION: versions[2], PREVIOUS: versions[1]}
    assert rollback("m", tracking_uri=store).champion_after == versions[1]
    assert aliases(client, "m") == {CHAMPION: versions[1], PREVIOUS: versions[0]}
    assert rollback("m", tracking_uri=store).champion_after == versions[0]
    assert aliases(client, "m") == {CHAMPION: versions[0]}


def test_candidate_without_metrics_never_moves_champion(store):
    client, _ = client_for(store)
    v1 = add_version(store, "m", 0.5)
    promote("m", v1, GATE, tracking_uri=store)
    v2 = add_version(store, "m", None)
    r = promote("m", v2, GATE, tracking_uri=store)
    assert not r.decision.promote and aliases(client, "m") == {CHAMPION: v1}


def test_decision_markdown_table_and_run_artifact(store, tmp_path):
    import mlflow

    client, _ = client_for(store)
    gate = GateConfig(
        rules=[
            GateRule(metric="score", direction="higher", margin=0.05),
            GateRule(metric="jerk", direction="lower", required=False),
        ]
    )
    name = "mosa-dit"
    client.create_registered_model(name)
    v1 = client.create_model_version(
        name, "s3://b/m", tags={"metric.score": "0.5", "metric.jerk": "0.2"}
    ).version
    v2 = client.create_model_version(
        name, "s3://b/m", tags={"metric.score": "0.6", "metric.jerk": "0.3"}
    ).version
    promote(name, v1, gate, tracking_uri=store)
    exp = client.create_experiment("mosa")
    run = client.create_run(exp, run_name="register")
    report = tmp_path / "reports" / "register" / "decision.md"
    res = promote(name, v2, gate, tracking_uri=store, report_path=report, run_id=run.info.run_id)
    text = report.read_text()
    assert res.decision.promote
    assert "# Promotion gate: mosa-dit v2" in text and "**Decision: promoted.**" in text
    assert "| champion | v1 | v2 |" in text and "| previous-champion | none | v1 |" in text
    assert "| score | higher | 0.6 | 0.5 | +0.05 | 0.55 | yes | yes |  |" in text
    assert "| jerk | lower | 0.3 | 0.2 | +0 | 0.2 | no | **no** |  |" in text
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="decision.md", dst_path=str(tmp_path / "dl"), tracking_uri=store
    )
    assert Path(local).read_text() == text
    assert "gate.decision_md" not in client.get_model_version(name, v2).tags


def test_copy_to_prod_sets_champion_on_the_copy(store):
    client, _ = client_for(store)
    v1 = add_version(store, "mosa-dit", 0.5)
    v2 = add_version(store, "mosa-dit", 0.6)
    copy = copy_to_prod("mosa-dit", v2, tracking_uri=store)
    assert copy.name == "mosa-dit-prod" and str(copy.version) == "1"
    assert copy.tags["metric.score"] == "0.6" and copy.tags["source_model"] == f"models:/mosa-dit/{v2}"
    assert aliases(client, "mosa-dit-prod") == {CHAMPION: "1"}
    assert str(copy_to_prod("mosa-dit", v1, tracking_uri=store).version) == "2"
    assert aliases(client, "mosa-dit-prod") == {CHAMPION: "2"}
    with pytest.raises(RegistryError, match="has no version '9'"):
        copy_to_prod("mosa-dit", 9, tracking_uri=store)


def test_unknown_model_and_version_errors(store):
    with pytest.raises(RegistryError, match="has no version '3'"):
        add_version(store, "m", 0.1)
        promote("m", 3, GATE, tracking_uri=store)
    with pytest.raises(RegistryError, match=r"'nope' not found.*register a version first"):
        rollback("nope", tracking_uri=store)


def test_lock_file_sits_beside_the_store(tmp_path, caplog):
    assert lock_file_for("sqlite:///mlflow.db") == Path("mlflow.db.registry.lock")
    assert lock_file_for(f"sqlite:///{tmp_path}/x/m.db") == tmp_path / "x" / "m.db.registry.lock"
    assert lock_file_for(f"file://{tmp_path}/mlruns") == tmp_path / "mlruns" / ".mosa-registry.lock"
    with caplog.at_level("WARNING"):
        server = lock_file_for("http://mlflow.internal:5000")
    assert server == lock_file_for("http://mlflow.internal:5000") and server.name.startswith("mosa-registry-")
    assert "only serialises promotions on this machine" in caplog.text and "advisory lock" in caplog.text


def test_registry_lock_excludes_and_times_out(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    entered = threading.Event()
    release = threading.Event()

    def hold():
        with registry_lock(uri) as path:
            assert path == tmp_path / "mlflow.db.registry.lock"
            entered.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert entered.wait(10)
    t0 = time.monotonic()
    with (
        pytest.raises(RegistryLockTimeout, match=r"mlflow\.db\.registry\.lock still held"),
        registry_lock(uri, timeout=0.3),
    ):
        pass
    assert time.monotonic() - t0 >= 0.3
    release.set()
    t.join()
    with registry_lock(uri, timeout=1):  # free again
        pass


# --------------------------------------------------------------------------------- concurrency


def _promote_many(uri: str, names: list[str], version: str, barrier, out) -> None:
    """Child process: for each model, start together with the other child, then promote."""
    for name in names:
        barrier.wait(60)
        res = promote(name, version, GATE, tracking_uri=uri)
        out.put((name, version, res.decision.promote, res.champion_before))


def test_two_processes_promoting_at_once_leave_consistent_aliases(store):
    rounds = [f"race-{i}" for i in range(4)]
    for name in rounds:  # v1 champion 0.5; v2 (0.6) and v3 (0.7) promoted at the same moment
        for score in (0.5, 0.6, 0.7):
            add_version(store, name, score)
        promote(name, "1", GATE, tracking_uri=store)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_promote_many, args=(store, rounds, v, barrier, out)) for v in ("2", "3")]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(2 * len(rounds))]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    client, _ = client_for(store)
    for name in rounds:
        got = {v: (promoted, before) for n, v, promoted, before in results if n == name}
        final = aliases(client, name)
        assert final[CHAMPION] == "3", (name, got, final)  # the better one wins whatever the order
        v3_prev = client.get_model_version(name, "3").tags[PREVIOUS_TAG]
        assert final[PREVIOUS] == v3_prev == got["3"][1]  # v3 replaced exactly the champion it saw
        if got["2"][0]:  # v2 went first: v3 replaced v2, and v2 had replaced v1
            assert (v3_prev, got["2"][1]) == ("2", "1")
        else:  # v3 went first: v2 was compared with v3 (not the stale v1) and rejected
            assert (v3_prev, got["2"][1]) == ("1", "3")


# ----------------------------------------------------------------------- champion in a new process

SERVE = textwrap.dedent(
    """
    import json, sys
    import mlflow, pandas as pd
    from components.io.video import probe
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model("models:/mosa-dit@champion")
    df = pd.DataFrame({"prompt": ["a person walks forward"], "seed": [3], "camera": ["fixed"], "steps": [2]})
    out = model.predict(df, params={"output_dir": sys.argv[2]})
    row = out.iloc[0]
    info = probe(row["video_path"])
    print(json.dumps({"path": row["video_path"], "frames": int(row["frames"]), "probe_frames": info.frames,
                      "height": info.height, "width": info.width, "row_h": int(row["height"]),
                      "row_w": int(row["width"])}))
    """
)


def test_champion_served_from_a_fresh_process(store, tmp_path, tmp_path_factory):
    from components.registry.register import register
    from tests.helpers.tiny_pipeline import build_tiny_pipeline

    pipe_dir = tmp_path_factory.getbasetemp() / "registry-tiny-pipeline"  # shared with the other tests
    if not (pipe_dir / "config.json").is_file():
        build_tiny_pipeline(pipe_dir, seed=0)
    res = register(
        pipe_dir,
        {"score": 0.5},
        tracking_uri=store,
        lineage={"lineage.profile": "test"},
        with_input_example=False,
    )
    assert promote("mosa-dit", res.version, GATE, tracking_uri=store).decision.promote
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SERVE, store, str(tmp_path / "videos")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(got["path"]).parent == tmp_path / "videos"
    assert got["probe_frames"] == got["frames"] > 1
    assert (got["height"], got["width"]) == (got["row_h"], got["row_w"])
