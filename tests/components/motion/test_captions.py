"""Captions and motion-only prompts: deterministic, measured manner and direction."""

from __future__ import annotations

import pytest

from components.motion.captions import captions, motion_facts, motion_prompt
from tests.components.motion.conftest import translating


@pytest.mark.parametrize(
    ("facing", "velocity", "expected"),
    [
        (0.0, (0.0, 1.2), "forward"),
        (0.0, (0.0, -1.2), "backward"),
        (0.0, (1.2, 0.0), "to the left"),
        (0.0, (-1.2, 0.0), "to the right"),
        (90.0, (1.2, 0.0), "forward"),  # facing +X and moving +X
        (90.0, (0.0, 1.2), "to the right"),  # facing +X, moving +Z is the body's right
    ],
)
def test_direction_relative_to_initial_facing(facing, velocity, expected):
    facts = motion_facts(translating(velocity, facing_deg=facing))
    assert facts.direction == expected
    assert facts.speed == pytest.approx(1.2 * (59 / 20) / 3.0, rel=1e-6)


def test_turn_sign_and_in_place():
    left = motion_facts(translating((0.0, 0.0), turn_deg=120.0))
    right = motion_facts(translating((0.0, 0.0), turn_deg=-120.0))
    assert left.direction == "in place"
    assert left.turn_degrees == pytest.approx(120.0, abs=1e-6)
    assert right.turn_degrees == pytest.approx(-120.0, abs=1e-6)


def test_prompt_has_motion_only_and_captions_are_deterministic():
    m = translating((0.0, 3.0), action="run")
    prompt = motion_prompt(m, seed=1)
    assert prompt.startswith("a person runs forward") and ("quickly" in prompt or "fast" in prompt)
    caps = captions(m, seed=1, n=3, appearance="a man in a red shirt", scene="across a tiled floor")
    assert caps == captions(m, seed=1, n=3, appearance="a man in a red shirt", scene="across a tiled floor")
    assert len(caps) == 3 and len(set(caps)) == 3
    assert all("forward" in c for c in caps)
    assert any("red shirt" in c for c in caps)
    assert "red shirt" not in prompt and "floor" not in prompt
    assert captions(m, seed=2, n=3) != captions(m, seed=1, n=3)


def test_turning_walk_is_described():
    m = translating((0.0, 1.0), turn_deg=-90.0)
    assert "turning right" in motion_prompt(m)
    backflip = translating((0.0, 0.0), action="backflip")
    assert motion_prompt(backflip) == "a person does a backflip"
