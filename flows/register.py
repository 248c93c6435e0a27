"""Stage ``register``: log the generation pipeline as an MLflow pyfunc model (safetensors + json
artifacts), register it with lineage tags and alias ``candidate``, and gate its promotion to
``champion`` against the current champion's evaluation metrics (DVC cmd: ``python -m flows.register``).

Writes ``reports/register/decision.md`` and appends the decision to the promotion log
``reports/register/promotions.jsonl`` (also kept in MLflow: a version tag and the run's artifact)."""

from __future__ import annotations

import json
import sys
from typing import Any

from prefect import flow

from components.config import load_section
from components.registry.config import RegisterParams
from flows.stage import stage_main, stage_run, tracking_uri


@flow(name="register", log_prints=True)
def register(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Register the pipeline, decide the promotion, write ``metrics/register.json``."""
    params: RegisterParams = load_section("register", params_path, overrides)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.registry.promote import copy_to_prod, promote
    from components.registry.register import register as register_model

    if not params.evaluation.is_file():
        raise FileNotFoundError(f"{params.evaluation} not found: run `dvc repro evaluate` first")
    evaluation = json.loads(params.evaluation.read_text())
    scores = {k: v for k, v in evaluation.items() if isinstance(v, int | float) or v is None}
    gate = params.gate
    # decision.md is rewritten atomically; promotions.jsonl beside it is an append-only log (a
    # persisted DVC out), so the folder is never replaced as a whole.
    with stage_run("register", params) as run:
        result = register_model(
            params.pipeline, scores, model_name=params.model_name, run_id=run.run_id,
            profile=params.profile,
        )  # fmt: skip
        decision = promote(
            params.model_name,
            result.version,
            gate,
            report_path=params.reports / "decision.md",
            run_id=run.run_id,
            history_path=params.promotions,
        )
        prod = None
        if decision.decision.promote and params.copy_to_prod:
            prod = copy_to_prod(params.model_name, result.version, params.prod_name).version
        metrics: dict[str, Any] = {
            "model_name": params.model_name,
            "model_version": int(result.version),
            "alias": "champion" if decision.champion_after == result.version else "candidate",
            "promoted": bool(decision.decision.promote),
            "decision": decision.record["decision"],
            "reason": decision.decision.reason,
            "champion_before": decision.champion_before,
            "champion_after": decision.champion_after,
            "compared": [
                {k: v for k, v in vars(row).items() if isinstance(v, str | int | float | bool) or v is None}
                for row in decision.decision.rows
            ],
            "prod_version": prod,
            "tracking_uri": tracking_uri(),
        }
        run.finish(metrics, markdown=decision.markdown)
    print(f"register: {params.model_name} v{result.version} -> {metrics['alias']} ({metrics['reason']})")
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(register))
