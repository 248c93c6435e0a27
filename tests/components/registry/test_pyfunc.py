"""The pyfunc model of a tiny real pipeline, logged to a real sqlite store: what is stored (safetensors,
JSON, one small wrapper pickle), what predict writes (decodable mp4s), and its errors."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
import pytest
import torch
import yaml

from components.io.video import probe
from components.registry.pyfunc import (
    OUTPUT_COLUMNS,
    PICKLE_SUFFIXES,
    REQUIREMENTS,
    MoSAPyfunc,
    PipelineFolderError,
    check_pipeline_dir,
    log_pipeline,
)


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
def logged(pipeline_dir, tmp_path_factory):
    """The pipeline logged (with its input example, which MLflow runs once) in a fresh sqlite store."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment("pyfunc-test", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=exp):
            info = log_pipeline(pipeline_dir)
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "download")))
        model = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(saved)
    return {"info": info, "local": local, "model": model, "uri": uri}


def test_logged_model_holds_the_pipeline_as_safetensors_and_json(logged, pipeline_dir):
    local = logged["local"]
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    pickles = sorted(f for f in files if Path(f).suffix in PICKLE_SUFFIXES)
    assert pickles == ["python_model.pkl"]  # MLflow's pickle of the wrapper class, nothing else
    source = {p.relative_to(pipeline_dir).as_posix() for p in pipeline_dir.rglob("*") if p.is_file()}
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    stored = mlmodel["flavors"]["python_function"]["artifacts"]["pipeline"]["path"]
    assert {f"{stored}/{f}" for f in source} <= files
    assert any(f.endswith(".safetensors") for f in source)
    wrapper_pkl = local / "python_model.pkl"
    assert wrapper_pkl.stat().st_size < 4096  # the wrapper holds no weights...
    wrapper = cloudpickle.loads(wrapper_pkl.read_bytes())
    assert isinstance(wrapper, MoSAPyfunc) and wrapper.pipeline is None  # ...and no pipeline
    assert b"components.registry.pyfunc" in wrapper_pkl.read_bytes()  # pickled by reference to the class


def test_logged_signature_example_and_requirements(logged):
    info = logged["info"]
    sig = info.signature
    assert [c.name for c in sig.inputs.inputs] == ["prompt", "seed", "camera", "steps", "guidance"]
    assert [c.required for c in sig.inputs.inputs] == [True, False, False, False, False]
    assert [c.name for c in sig.outputs.inputs] == list(OUTPUT_COLUMNS)
    assert [p.name for p in sig.params.params] == ["output_dir"]
    example = json.loads((logged["local"] / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"][0] == "prompt"
    reqs = (logged["local"] / "requirements.txt").read_text().split()
    assert f"torch=={metadata.version('torch')}" in reqs and f"mlflow=={metadata.version('mlflow')}" in reqs
    assert len(reqs) == len(REQUIREMENTS) and all("==" in r for r in reqs)  # every one pinned


def test_predict_writes_one_decodable_mp4_per_prompt(logged, tmp_path):
    df = pd.DataFrame(
        {
            "prompt": ["a man walks forward", "a woman jumps", "a man walks forward"],
            "seed": [1, 2, 1],
            "camera": ["fixed", "orbit", "fixed"],
            "steps": [2, 2, 2],
        }
    )
    out = logged["model"].predict(df, params={"output_dir": str(tmp_path / "videos")})
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 3
    for row in out.itertuples():
        path = Path(row.video_path)
        assert path.parent == tmp_path / "videos" and path.suffix == ".mp4"
        info = probe(path)
        assert (info.frames, info.height, info.width) == (row.frames, row.height, row.width)
        assert info.fps == pytest.approx(row.fps, rel=1e-3)
        assert row.motion_prompt
    assert out["camera"].tolist() == ["fixed", "orbit", "fixed"]
    data = [Path(p).read_bytes() for p in out["video_path"]]
    assert data[0] == data[2]  # same prompt and seed: the same video
    assert data[0] != data[1]


def test_predict_defaults_and_temp_output_dir(logged):
    out = logged["model"].predict(pd.DataFrame({"prompt": ["a person waves"], "steps": [1]}))
    row = out.iloc[0]
    assert (row["seed"], row["camera"]) == (0, "fixed")
    assert Path(row["video_path"]).is_file() and "mosa-generate-" in row["video_path"]


def test_predict_errors_name_the_bad_input(logged, tmp_path):
    model = logged["model"]
    with pytest.raises(mlflow.exceptions.MlflowException, match="prompt"):
        model.predict(pd.DataFrame({"text": ["a man runs"]}))  # schema enforcement
    raw = model.unwrap_python_model()
    with pytest.raises(ValueError, match=r"'prompt' column .* got DataFrame with columns \['text'\]"):
        raw.predict(None, pd.DataFrame({"text": ["a man runs"]}))
    with pytest.raises(ValueError, match=r"prompt of row\(s\) \[1\] is empty"):
        raw.predict(None, pd.DataFrame({"prompt": ["a man runs", "  "]}))
    with pytest.raises(ValueError, match="no rows"):
        raw.predict(None, pd.DataFrame({"prompt": []}))
    with pytest.raises(ValueError, match="row 1: bad camera spec 'sideways'"):
        raw.predict(
            None,
            pd.DataFrame(
                {"prompt": ["a man runs", "a man runs"], "camera": ["fixed", "sideways"], "steps": [1, 1]}
            ),
            params={"output_dir": str(tmp_path)},
        )
    assert list(tmp_path.iterdir()) == []  # nothing generated before the bad row was found
    with pytest.raises(RuntimeError, match="has no pipeline"):
        MoSAPyfunc().predict(None, pd.DataFrame({"prompt": ["a man runs"]}))


def test_only_saved_pipelines_without_pickles_can_be_logged(pipeline_dir, tmp_path):
    with pytest.raises(PipelineFolderError, match=r"does not exist: train the model first"):
        check_pipeline_dir(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineFolderError, match=r"has no pipeline config"):
        check_pipeline_dir(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"format": "mosa-pipeline", "version": 2}')
    (bad / "mosa").mkdir()
    torch.save({"w": torch.zeros(1)}, bad / "mosa" / "model.pt")
    with pytest.raises(PipelineFolderError, match=re.escape("pickle-format files ['mosa/model.pt']")):
        check_pipeline_dir(bad)
    assert check_pipeline_dir(pipeline_dir) == pipeline_dir


def test_download_pipeline_finds_the_folder_the_mlmodel_names(logged, pipeline_dir, tmp_path):
    from components.registry.pyfunc import download_pipeline

    saved = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(logged["uri"])
    try:
        folder = download_pipeline(logged["info"].model_uri, tmp_path / "dl")
        assert (folder / "config.json").read_bytes() == (pipeline_dir / "config.json").read_bytes()
    finally:
        mlflow.set_tracking_uri(saved)


def test_download_pipeline_refuses_a_model_without_the_pipeline(tmp_path, monkeypatch):
    from components.registry import pyfunc

    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    artifacts: {}\n")
    monkeypatch.setattr(pyfunc.mlflow.artifacts, "download_artifacts", lambda **kw: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no 'pipeline' artifact"):
        pyfunc.download_pipeline("models:/other@champion")
    (tmp_path / "MLmodel").unlink()
    with pytest.raises(FileNotFoundError, match="no MLmodel"):
        pyfunc.download_pipeline("models:/other@champion")


def _local_model(folder: Path, rel: str) -> Path:
    """A model folder on disk whose MLmodel names ``rel`` as the pipeline artifact's path."""
    folder.mkdir(parents=True)
    spec = {"flavors": {"python_function": {"artifacts": {"pipeline": {"path": rel, "uri": "pipeline"}}}}}
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))
    return folder


@pytest.mark.parametrize("kind", ["dotdot", "nested-dotdot", "absolute"])
def test_download_pipeline_refuses_a_path_that_leaves_the_download_folder(tmp_path, kind):
    from components.registry.pyfunc import download_pipeline

    dst = tmp_path / "dl"
    outside = dst / "x"  # what "../x" names from the downloaded model folder dl/model
    outside.mkdir(parents=True)
    (outside / "config.json").write_text('{"format": "mosa-pipeline", "version": 2}')
    rel = {"dotdot": "../x", "nested-dotdot": "artifacts/../../x", "absolute": str(outside)}[kind]
    model = _local_model(tmp_path / "src" / "model", rel)
    with pytest.raises(ValueError, match=re.escape(repr(rel)) + ".*leaves the downloaded model folder"):
        download_pipeline(str(model), dst)  # a real download (local artifact repository)


def test_download_pipeline_accepts_a_path_inside_and_refuses_a_symlink_out(tmp_path):
    from components.registry.pyfunc import UnsafeArtifactPath, download_pipeline, inside_artifact_folder

    model = _local_model(tmp_path / "src" / "model", "artifacts/pipeline")
    (model / "artifacts" / "pipeline").mkdir(parents=True)
    (model / "artifacts" / "pipeline" / "config.json").write_text('{"format": "mosa-pipeline", "version": 2}')
    got = download_pipeline(str(model), tmp_path / "dl")
    assert got == tmp_path / "dl" / "model" / "artifacts" / "pipeline" and (got / "config.json").is_file()
    (got.parent / "elsewhere").symlink_to(tmp_path / "src")
    with pytest.raises(UnsafeArtifactPath, match=r"'artifacts/elsewhere' resolves to .* outside"):
        inside_artifact_folder(got.parent.parent, "artifacts/elsewhere")
