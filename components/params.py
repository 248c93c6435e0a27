"""``StrictModel``: the base of every params model (unknown keys fail validation, instances are frozen).

The bottom of the layering: each room's ``config.py`` leaf builds on it, and it imports only pydantic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys (a misspelt param fails, naming the key) and is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
