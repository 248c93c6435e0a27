"""Every params.yaml section's model, indexed by name. The models live in their rooms' ``config.py``
leaves (``components.data.config.IngestParams``, ...); this index is for tools that want them all
(docs, the params checks); a stage imports only its own room's leaf, through ``load_section``."""

from __future__ import annotations

from pydantic import BaseModel

from components.annotation.config import AnnotateParams
from components.base.config import PretrainBaseParams
from components.data.config import IngestParams
from components.dit.config import TrainDiTParams
from components.evaluation.config import AblateParams, EvaluateParams
from components.motion.config import PretrainMotionParams
from components.registry.config import RegisterParams

SECTIONS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "annotate": AnnotateParams,
    "pretrain_motion": PretrainMotionParams,
    "pretrain_base": PretrainBaseParams,
    "train_dit": TrainDiTParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
    "ablate": AblateParams,
}
