"""Registration of a tiny real pipeline in a real sqlite registry: version, candidate alias, metric
and lineage tags, the run it is logged in, and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow import MlflowClient

from components.registry.promote import RegistryError
from components.registry.pyfunc import PipelineFolderError
from components.registry.register import metric_tags, register


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    """A tiny random-weight pipeline, built once per test session (shared with the other registry tests)."""
    from tests.helpers.tiny_pipeline import build_tiny_pipeline

    torch.set_num_threads(1)
    cached = tmp_path_factory.getbasetemp() / "registry-tiny-pipeline"
    if not (cached / "config.json").is_file():
        build_tiny_pipeline(cached, seed=0)
    return cached


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised empty sqlite store (creating the schema takes seconds; copying it does not)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def project(tmp_path, monkeypatch, empty_store):
    """A project folder with a dvc.lock and the runs of two earlier stages in experiment "mosa"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lock = {
        "schema": "2.0",
        "stages": {
            "ingest": {
                "deps": [{"path": "components/data", "md5": "aaa.dir"}],
                "params": {"params.yaml": {}},
            },
            "evaluate": {"deps": [{"path": "models/dit", "md5": "bbb.dir"}], "outs": []},
        },
    }
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    client = MlflowClient(uri)
    exp = client.create_experiment("mosa", artifact_location=(tmp_path / "mlartifacts").as_uri())
    runs = {s: client.create_run(exp, tags={"stage": s}).info.run_id for s in ("ingest", "evaluate")}
    return {"uri": uri, "runs": runs, "root": tmp_path}


METRICS = {
    "fd_effnet_frames": 12.5,
    "vbench": {"subject_consistency": 0.91, "dynamic_degree": None},
    "clips": 4,
}


def test_register_creates_a_tagged_candidate_version(project, pipeline_dir):
    uri = project["uri"]
    before = mlflow.get_tracking_uri()
    res = register(pipeline_dir, METRICS, tracking_uri=uri, profile="default", with_input_example=False)
    assert mlflow.get_tracking_uri() == before  # the caller's global URI is restored
    client = MlflowClient(uri, registry_uri=uri)
    assert (res.model_name, res.version, res.alias, res.model_uri) == (
        "mosa-dit",
        "1",
        "candidate",
        "models:/mosa-dit/1",
    )
    mv = client.get_model_version("mosa-dit", "1")
    assert mv.run_id == res.run_id and mv.source == res.logged_model_uri
    assert mv.tags["metric.fd_effnet_frames"] == "12.5"
    assert mv.tags["metric.vbench.subject_consistency"] == "0.91"
    assert mv.tags["metric.vbench.dynamic_degree"] == "null"
    assert mv.tags["metric.clips"] == "4"
    assert mv.tags["lineage.profile"] == "default"
    assert json.loads(mv.tags["lineage.dvc.ingest.deps"]) == {"components/data": "aaa.dir"}
    assert mv.tags["lineage.run.ingest"] == project["runs"]["ingest"]
    assert mv.tags["lineage.run.evaluate"] == project["runs"]["evaluate"]
    assert mv.tags["lineage.git_commit"]
    assert dict(client.get_registered_model("mosa-dit").aliases) in ({"candidate": "1"}, {"candidate": 1})

    run = client.get_run(res.run_id)
    assert run.info.run_name == "register"
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(project["root"] / "mlartifacts")
    saved = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/evaluation_metrics.json")
    assert saved == METRICS

    model = mlflow.pyfunc.load_model("models:/mosa-dit@candidate")  # the registry URI resolves the alias
    assert model.metadata.get_input_schema().input_names()[0] == "prompt"


def test_second_registration_moves_the_candidate_alias(project, pipeline_dir):
    uri = project["uri"]
    first = register(pipeline_dir, {"score": 0.1}, tracking_uri=uri, lineage={}, with_input_example=False)
    second = register(pipeline_dir, {"score": 0.2}, tracking_uri=uri, lineage={}, with_input_example=False)
    client = MlflowClient(uri, registry_uri=uri)
    assert (first.version, second.version) == ("1", "2")
    assert str(client.get_model_version_by_alias("mosa-dit", "candidate").version) == "2"
    assert client.get_model_version("mosa-dit", "1").aliases == []
    assert second.tags == {"metric.score": "0.2"}  # lineage given explicitly: nothing computed


def test_register_uses_the_active_run(project, pipeline_dir):
    uri = project["uri"]
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("mosa").experiment_id) as run:
            res = register(pipeline_dir, {"score": 1}, lineage={}, with_input_example=False)
            with pytest.raises(RegistryError, match=r"an MLflow run is active on .* but tracking_uri="):
                register(pipeline_dir, {}, tracking_uri="sqlite:///other.db", lineage={})
    finally:
        mlflow.set_tracking_uri(None)
    assert res.run_id == run.info.run_id


def test_metric_tags_flatten_and_reject_non_numbers():
    assert metric_tags({"a": 1, "b": {"c": 0.25, "d": float("nan")}, "e": None}) == {
        "metric.a": "1",
        "metric.b.c": "0.25",
        "metric.b.d": "null",
        "metric.e": "null",
    }
    assert float(metric_tags({"x": 0.1 + 0.2})["metric.x"]) == 0.1 + 0.2  # exact round trip
    with pytest.raises(RegistryError, match=r"metric 'b\.note' is 'ok' \(str\)"):
        metric_tags({"b": {"note": "ok"}})
    with pytest.raises(RegistryError, match="metric 'flag' is True"):
        metric_tags({"flag": True})


def test_bad_inputs_fail_before_anything_is_logged(project, tmp_path):
    uri = project["uri"]
    with pytest.raises(PipelineFolderError, match="does not exist: train the model first"):
        register(tmp_path / "missing", {"score": 1.0}, tracking_uri=uri)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text('{"format": "mosa-pipeline", "version": 2}')
    with pytest.raises(RegistryError, match="must be numbers or null"):
        register(tmp_path / "p", {"score": "high"}, tracking_uri=uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mosa").experiment_id
    runs = client.search_runs([exp])
    assert sorted(r.data.tags["stage"] for r in runs) == ["evaluate", "ingest"]  # no register run
    assert client.search_registered_models() == []
