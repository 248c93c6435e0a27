"""Register a trained pipeline: log it as a pyfunc model, create a model version tagged with its
lineage and evaluation metrics, and point the ``candidate`` alias at it (promotion is separate)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from components.registry.lineage import EXPERIMENT, default_tracking_uri, lineage_tags
from components.registry.promote import CANDIDATE, METRIC_TAG_PREFIX, RegistryError, client_for
from components.registry.pyfunc import check_pipeline_dir, log_pipeline

DEFAULT_MODEL_NAME = "mosa-dit"


@dataclasses.dataclass(frozen=True)
class RegisterResult:
    """The new model version: ``model_uri`` is ``models:/<name>/<version>``."""

    model_name: str
    version: str
    run_id: str
    model_uri: str
    logged_model_uri: str
    alias: str
    tags: dict[str, str]


def _flat(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def metric_tags(metrics: Mapping[str, Any]) -> dict[str, str]:
    """``{"metric.<name>": value}``; nested dicts become dotted names, None/non-finite become ``null``.

    Values must be numbers (or None): a gate compares them.
    """
    tags = {}
    for name, value in _flat(metrics).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RegistryError(
                f"metric '{name}' is {value!r} ({type(value).__name__}): evaluation metrics must be "
                "numbers or null; drop non-numeric entries before registering"
            )
        if value is None or not math.isfinite(value):
            tags[METRIC_TAG_PREFIX + name] = "null"
        else:
            tags[METRIC_TAG_PREFIX + name] = repr(int(value) if isinstance(value, int) else float(value))
    return tags


def _experiment_id(uri: str, experiment: str) -> str:
    """The experiment's id, creating it with its artifacts beside a sqlite store (``mlartifacts/``)."""
    client, _ = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
        root.mkdir(parents=True, exist_ok=True)
        location = root.as_uri()
    return client.create_experiment(experiment, artifact_location=location)


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    try:
        client.create_registered_model(
            model_name, description="MoSA text-to-video pipeline (structure + appearance branches)"
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


@contextlib.contextmanager
def _run(uri: str | None, run_id: str | None, experiment: str) -> Iterator[tuple[str, str]]:
    """Yield (run id, tracking uri): the active run, the run ``run_id``, or a new ``register`` run."""
    active = mlflow.active_run()
    if active is not None:
        current = mlflow.get_tracking_uri()
        if uri is not None and uri != current:
            raise RegistryError(
                f"an MLflow run is active on {current} but tracking_uri={uri} was given: "
                "end the run or pass the same URI"
            )
        if run_id is not None and run_id != active.info.run_id:
            raise RegistryError(f"run {active.info.run_id} is active but run_id={run_id} was given")
        yield active.info.run_id, current
        return
    uri = uri or default_tracking_uri()
    saved = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        if run_id is not None:
            with mlflow.start_run(run_id=run_id) as run:
                yield run.info.run_id, uri
        else:
            exp_id = _experiment_id(uri, experiment)
            with mlflow.start_run(experiment_id=exp_id, run_name="register", log_system_metrics=False) as run:
                yield run.info.run_id, uri
    finally:
        mlflow.set_tracking_uri(saved)


def register(
    pipeline_dir: Path | str,
    metrics: Mapping[str, Any],
    model_name: str = DEFAULT_MODEL_NAME,
    tracking_uri: str | None = None,
    *,
    run_id: str | None = None,
    profile: str = "default",
    lineage: Mapping[str, str] | None = None,
    lock_path: Path | str = "dvc.lock",
    experiment: str = EXPERIMENT,
    with_input_example: bool = True,
) -> RegisterResult:
    """Log ``pipeline_dir`` as a pyfunc model and register it as a new version of ``model_name``
    tagged with lineage (computed from ``lock_path`` and the tracking store unless ``lineage`` is
    given) and ``metric.<name>`` tags; then set the ``candidate`` alias on it.

    The model is logged in the active MLflow run, else in run ``run_id``, else in a new run named
    ``register`` in ``experiment``.
    """
    check_pipeline_dir(pipeline_dir)
    tags = metric_tags(metrics)
    with _run(tracking_uri, run_id, experiment) as (rid, uri):
        if lineage is None:
            lineage = lineage_tags(
                profile=profile, tracking_uri=uri, experiment=experiment, lock_path=lock_path
            )
        tags.update(lineage)
        mlflow.log_dict(dict(metrics), "evaluation_metrics.json")
        info = log_pipeline(pipeline_dir, name="model", with_input_example=with_input_example)
        client, _ = client_for(uri)
        _ensure_registered_model(client, model_name)
        mv = client.create_model_version(
            model_name, source=info.model_uri, run_id=rid, tags=tags, model_id=info.model_id
        )
        client.set_registered_model_alias(model_name, CANDIDATE, mv.version)
    return RegisterResult(
        model_name=model_name,
        version=str(mv.version),
        run_id=rid,
        model_uri=f"models:/{model_name}/{mv.version}",
        logged_model_uri=info.model_uri,
        alias=CANDIDATE,
        tags=tags,
    )
