"""Model registry: the MLflow pyfunc of the MoSA pipeline, registration with lineage, and the
promotion gate that moves the ``champion`` alias (with rollback and copy to a production model)."""

from components.registry.lineage import LineageError, lineage_tags, read_dvc_lock
from components.registry.promote import (
    CANDIDATE,
    CHAMPION,
    PREVIOUS,
    Decision,
    GateConfig,
    GateRow,
    GateRule,
    PromotionResult,
    RegistryError,
    RegistryLockTimeout,
    RollbackResult,
    copy_to_prod,
    decide,
    promote,
    registry_lock,
    rollback,
)
from components.registry.pyfunc import MoSAPyfunc, PipelineFolderError, log_pipeline
from components.registry.register import RegisterResult, register

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "PREVIOUS",
    "Decision",
    "GateConfig",
    "GateRow",
    "GateRule",
    "LineageError",
    "MoSAPyfunc",
    "PipelineFolderError",
    "PromotionResult",
    "RegisterResult",
    "RegistryError",
    "RegistryLockTimeout",
    "RollbackResult",
    "copy_to_prod",
    "decide",
    "lineage_tags",
    "log_pipeline",
    "promote",
    "read_dvc_lock",
    "register",
    "registry_lock",
    "rollback",
]
