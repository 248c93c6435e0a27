"""Per-pixel part labels shared by the body, the scene and the renderer (``GroundTruth.parts``)."""

from __future__ import annotations

PART_NAMES: tuple[str, ...] = (
    "background", "ground", "box", "head", "neck", "torso", "pelvis",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand",
    "left_thigh", "right_thigh", "left_shin", "right_shin", "left_foot", "right_foot",
)  # fmt: skip
PART = {name: i for i, name in enumerate(PART_NAMES)}
BACKGROUND, GROUND, BOX = PART["background"], PART["ground"], PART["box"]
FIRST_BODY_PART = PART["head"]  # labels >= this belong to the person (the person mask)
