"""Config leaf of the losses room: the weights of Eq. 9's terms and the ablation switches. Pydantic only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LossWeights(BaseModel):
    """Weights λ of the auxiliary terms (the diffusion term has weight 1) and the ablation switches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mask: float = Field(0.001, ge=0, description="λ₁, HADC mask loss")
    track: float = Field(0.01, ge=0, description="λ₂, dense tracking loss")
    contact: float = Field(10.0, ge=0, description="λ₃, 3D contact loss")
    track_mode: Literal["temporal", "static", "off"] = "temporal"
    contact_enabled: bool = True

    def weight(self, term: str) -> float:
        """The factor of ``term`` in Eq. 9; 0 for a switched-off term."""
        if term == "diff":
            return 1.0
        if term == "track" and self.track_mode == "off":
            return 0.0
        if term == "contact" and not self.contact_enabled:
            return 0.0
        return float(getattr(self, term))
