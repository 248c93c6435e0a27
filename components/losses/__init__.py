"""MoSA's training losses: v-prediction diffusion, HADC mask, dense tracking (with a differentiable
soft tracker), 3D contact, and their Eq. 9 combination."""

from components.losses.contact import (
    ContactLoss,
    SceneHulls,
    contact_loss,
    contact_violation_frames,
    contact_violation_rate,
    hull_sdf,
    scene_hulls,
)
from components.losses.diffusion import add_noise, v_prediction_loss, v_target, x0_from_v
from components.losses.mask import mask_loss
from components.losses.soft_tracker import soft_track
from components.losses.total import LossWeights, combine
from components.losses.tracking import TRACK_MODES, pair_weights, tracking_loss

__all__ = [
    "TRACK_MODES",
    "ContactLoss",
    "LossWeights",
    "SceneHulls",
    "add_noise",
    "combine",
    "contact_loss",
    "contact_violation_frames",
    "contact_violation_rate",
    "hull_sdf",
    "mask_loss",
    "pair_weights",
    "scene_hulls",
    "soft_track",
    "tracking_loss",
    "v_prediction_loss",
    "v_target",
    "x0_from_v",
]
