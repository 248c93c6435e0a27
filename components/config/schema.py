"""Typed models of params.yaml sections (one module per stage in ``sections/``), indexed by name.

Unknown keys and wrong types fail validation. Each stage's DVC deps list only its own section
module (plus ``sections/common.py``), not this index: adding a section here changes no stage's
behaviour, and a new key in one section reruns only that stage.
"""

from __future__ import annotations

from pydantic import BaseModel

from components.config.sections.ablate import AblateParams
from components.config.sections.annotate import (  # noqa: F401
    AnnotateParams,
    AnnotatorParams,
    CaptionParams,
    FilterParams,
    PeopleParams,
    TrackParams,
)
from components.config.sections.common import (  # noqa: F401
    TrainPhaseParams,
    _Strict,
)
from components.config.sections.evaluate import (
    EvaluateParams,
)
from components.config.sections.ingest import (  # noqa: F401
    DEFAULT_SYNTHETIC_CAMERAS,
    ClipParams,
    DemoSource,
    FolderSource,
    IngestParams,
    InputLimits,
    ManifestSource,
    QualityParams,
    Source,
    SyntheticSource,
)
from components.config.sections.pretrain_base import (  # noqa: F401
    PretrainBaseParams,
    SampleParams,
    TokenEncoderParams,
)
from components.config.sections.pretrain_motion import (  # noqa: F401
    MotionEvalParams,
    PretrainMotionParams,
    TextEncoderParams,
    _model_config,
)
from components.config.sections.register import (
    RegisterParams,
)
from components.config.sections.train_dit import (  # noqa: F401
    FollowParams,
    TrainDiTParams,
)

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
