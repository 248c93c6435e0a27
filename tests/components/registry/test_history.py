"""The promotion log: append-only JSON lines (atomic per line, earlier bytes untouched) and the same
records in MLflow (version tags, the register run's artifact), on a real sqlite registry."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import mlflow
import pytest

from components.registry.config import GateConfig, GateRule
from components.registry.history import (
    RECORD_KEYS,
    RECORD_TAG_PREFIX,
    append_record,
    make_record,
    read_records,
    record_tag,
    records_from_registry,
    restore_log,
)
from components.registry.promote import client_for, promote, rollback

GATE = GateConfig(rules=[GateRule(metric="score", direction="higher")])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------------ the file


def test_append_writes_one_line_and_never_touches_earlier_bytes(tmp_path):
    log = tmp_path / "reports" / "register" / "promotions.jsonl"
    log.parent.mkdir(parents=True)
    earlier = '{"time": "2020-01-01T00:00:00.000000+00:00", "note": "écrit à la main"}\n{"x": 1}\n'
    log.write_text(earlier, encoding="utf-8")
    before = log.read_bytes()
    rec = make_record("mosa-dit", 3, "rejected", "2", "2", "rejected: line one\nline two", [{"metric": "fd"}])
    append_record(log, rec)
    after = log.read_bytes()
    assert after.startswith(before)
    added = after[len(before) :].decode()
    assert added.count("\n") == 1 and added.endswith("\n")  # the reason's newline is escaped
    got = json.loads(added)
    assert tuple(got) == RECORD_KEYS and got == rec
    assert got["version"] == "3" and got["rules"] == [{"metric": "fd"}]


def test_a_torn_last_line_is_kept_and_the_next_record_starts_a_new_line(tmp_path):
    log = tmp_path / "promotions.jsonl"
    log.write_bytes(b'{"whole": 1}\n{"torn": ')
    append_record(log, make_record("m", 1, "promoted", None, "1", "promoted: first"))
    data = log.read_bytes()
    assert data.startswith(b'{"whole": 1}\n{"torn": \n')
    assert [r.get("decision") for r in read_records(log)] == [None, "promoted"]  # torn line skipped


def test_make_record_refuses_an_unknown_decision():
    with pytest.raises(
        ValueError, match=r"'moved' is not one of \('promoted', 'rejected', 'rollback', 'manual'\)"
    ):
        make_record("m", 1, "moved", None, "1", "x")  # type: ignore[arg-type]


def _append_many(path: str, worker: int, n: int) -> None:
    for i in range(n):
        rec = make_record("m", i, "rejected", "1", "1", f"worker {worker} record {i} " + "x" * 3000)
        append_record(path, rec)


def test_concurrent_appends_from_processes_leave_only_whole_lines(tmp_path):
    log = tmp_path / "promotions.jsonl"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(log), w, 25)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 75
    reasons = sorted(json.loads(line)["reason"].split(" x")[0] for line in lines)
    assert reasons == sorted(f"worker {w} record {i}" for w in range(3) for i in range(25))


def test_record_tag_key_and_a_value_that_fits_a_tag():
    rec = make_record(
        "m", 1, "promoted", None, "1", "r", [{"metric": f"m{i}", "note": "n" * 200} for i in range(60)]
    )
    key, value = record_tag(rec)
    assert key.startswith(RECORD_TAG_PREFIX) and len(key) == len(RECORD_TAG_PREFIX) + len(
        "20250101T000000000000Z"
    )
    assert len(value) <= 7900
    short = json.loads(value)
    assert short["decision"] == "promoted" and short["rules"][0] == {"metric": "m0", "passed": None}


# ------------------------------------------------------------------------ promote / rollback


def add_version(uri: str, name: str, score: float) -> str:
    client, _ = client_for(uri)
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    return str(
        client.create_model_version(name, source="s3://b/m", tags={"metric.score": repr(score)}).version
    )


def _record_tags(uri: str, name: str, version: str) -> list[dict]:
    client, _ = client_for(uri)
    tags = client.get_model_version(name, version).tags
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(RECORD_TAG_PREFIX)]


def test_every_decision_and_rollback_is_logged_locally_and_on_the_version(store, tmp_path):
    log = tmp_path / "reports" / "register" / "promotions.jsonl"
    v1, v2, v3 = (add_version(store, "mosa-dit", s) for s in (0.5, 0.5, 0.7))
    snapshots = []
    promote("mosa-dit", v1, GATE, tracking_uri=store, history_path=log)
    snapshots.append(log.read_bytes())
    promote("mosa-dit", v2, GATE, tracking_uri=store, history_path=log)  # a tie: rejected
    snapshots.append(log.read_bytes())
    promote("mosa-dit", v3, GATE, tracking_uri=store, history_path=log)
    snapshots.append(log.read_bytes())
    rollback("mosa-dit", tracking_uri=store, history_path=log)
    final = log.read_bytes()
    for earlier in snapshots:
        assert final.startswith(earlier)
    recs = _lines(log)
    assert all(tuple(r) == RECORD_KEYS for r in recs)
    assert [(r["version"], r["decision"], r["champion_before"], r["champion_after"]) for r in recs] == [
        (v1, "promoted", None, v1),
        (v2, "rejected", v1, v1),
        (v3, "promoted", v1, v3),
        (v1, "rollback", v3, v1),
    ]
    assert "a tie" in recs[1]["reason"]
    assert recs[1]["rules"] == [
        {
            "metric": "score",
            "direction": "higher",
            "margin": 0.0,
            "margin_type": "absolute",
            "required": True,
            "candidate": 0.5,
            "champion": 0.5,
            "threshold": 0.5,
            "passed": False,
            "note": "",
        }
    ]
    assert recs[3]["rules"] == [] and "v3 -> v1" in recs[3]["reason"]
    # the same records are tags of the versions they are about
    assert _record_tags(store, "mosa-dit", v1) == [recs[0], recs[3]]
    assert _record_tags(store, "mosa-dit", v2) == [recs[1]]
    client, _ = client_for(store)
    assert client.get_model_version("mosa-dit", v2).tags["gate.decision"] == "rejected"
    assert records_from_registry(client, "mosa-dit") == recs


def test_the_register_run_keeps_the_log_as_an_artifact(store, tmp_path):
    log = tmp_path / "promotions.jsonl"
    client, _ = client_for(store)
    v1 = add_version(store, "m", 0.5)
    run = client.create_run(client.create_experiment("mosa"), run_name="register")
    res = promote("m", v1, GATE, tracking_uri=store, run_id=run.info.run_id, history_path=log)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="promotions.jsonl",
        dst_path=str(tmp_path / "dl"),
        tracking_uri=store,
    )
    assert Path(local).read_bytes() == log.read_bytes()
    assert _lines(Path(local)) == [res.record]


def test_a_lost_log_is_restored_from_mlflow_before_the_next_append(store, tmp_path):
    log = tmp_path / "promotions.jsonl"
    versions = [add_version(store, "m", s) for s in (0.1, 0.2, 0.3)]
    promote("m", versions[0], GATE, tracking_uri=store, history_path=log)
    promote("m", versions[1], GATE, tracking_uri=store, history_path=log)
    kept = log.read_bytes()
    log.unlink()  # the working copy lost it
    res = promote("m", versions[2], GATE, tracking_uri=store, history_path=log)
    assert log.read_bytes() == kept + (json.dumps(res.record, ensure_ascii=False) + "\n").encode()
    # an existing log is never rewritten by a restore
    client, _ = client_for(store)
    assert restore_log(log, client, "m") == 0 and log.read_bytes().startswith(kept)
