"""Registry moves by hand, one code path for the CLI and Prefect: ``mosa promote`` / ``mosa rollback``
and the flows :func:`promote` and :func:`rollback` (deployments ``promote/promote``, ``rollback/rollback`` in
``infra/prefect/prefect.yaml``) all call :func:`promote_version` / :func:`rollback_champion`.

``promote_version`` gates a registered version against the champion with params.yaml
``register.gate`` (``force`` moves ``champion`` anyway); ``rollback_champion`` points ``champion``
back at the previous champion. Each decision is appended to the promotion log ``register.promotions``
(and kept as a model version tag in MLflow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from components.config import load_section
from components.registry.config import RegisterParams
from flows.stage import use_tracking_uri

if TYPE_CHECKING:
    from components.registry.promote import PromotionResult, RollbackResult

DEFAULT_PARAMS = "params.yaml"


class PromotionRejected(RuntimeError):
    """The gate refused the version (the ``rejected`` record is already in the promotion log)."""


def promote_version(
    version: str | int,
    model_name: str | None = None,
    *,
    params_path: str = DEFAULT_PARAMS,
    force: bool = False,
) -> PromotionResult:
    """Gate ``version`` of ``model_name`` (default ``register.model_name``) by hand and move
    ``champion`` if it passes (or when ``force``); prints the decision table and where it was logged.
    The record (``manual`` or ``rejected``) is appended to ``register.promotions``."""
    params: RegisterParams = load_section("register", params_path)
    # lazy: MLflow loads after the params validate (a bad params.yaml fails fast)
    from components.registry.promote import promote as gate_and_promote

    res = gate_and_promote(
        model_name or params.model_name,
        str(version),
        params.gate,
        tracking_uri=use_tracking_uri(),
        history_path=params.promotions,
        manual=True,
        force=force,
    )
    print(res.markdown)
    print(f"promote: {res.record['decision']} (logged to {params.promotions})")
    return res


def rollback_champion(model_name: str | None = None, *, params_path: str = DEFAULT_PARAMS) -> RollbackResult:
    """Point ``champion`` of ``model_name`` (default ``register.model_name``) back at the previous
    champion; the ``rollback`` record is appended to ``register.promotions``. ``RegistryError`` when
    there is no previous champion."""
    params: RegisterParams = load_section("register", params_path)
    # lazy: MLflow loads after the params validate (a bad params.yaml fails fast)
    from components.registry.promote import rollback as restore_previous

    name = model_name or params.model_name
    res = restore_previous(name, tracking_uri=use_tracking_uri(), history_path=params.promotions)
    print(
        f"rollback: {name} champion v{res.champion_before} -> v{res.champion_after} "
        f"(logged to {params.promotions})"
    )
    return res


@flow(name="promote", log_prints=True)
def promote(
    version: int,
    model_name: str | None = None,
    force: bool = False,
    params_path: str = DEFAULT_PARAMS,
) -> dict[str, Any]:
    """Promote a registered version by hand (the ``mosa promote`` of the Prefect UI/API). The run
    publishes the decision as the markdown artifact ``promote-decision`` and fails when the gate
    rejects (the rejection is logged all the same)."""
    res = promote_version(version, model_name, params_path=params_path, force=force)
    create_markdown_artifact(key="promote-decision", markdown=res.markdown, description="promotion gate")
    if not res.decision.promote:
        raise PromotionRejected(f"{res.model_name} v{res.version} not promoted: {res.decision.reason}")
    return res.record


@flow(name="rollback", log_prints=True)
def rollback(model_name: str | None = None, params_path: str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Move ``champion`` back to the previous champion (the ``mosa rollback`` of the Prefect UI/API)."""
    return rollback_champion(model_name, params_path=params_path).record
