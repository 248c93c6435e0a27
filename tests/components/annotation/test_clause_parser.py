"""Rule-based motion-only prompts, lemmas and action phrases from captions."""

from __future__ import annotations

import itertools

import pytest

from components.annotation.clause_parser import action_phrases, extract_motion_prompt, lemmatize
from components.motion.captions import ACTION_PHRASES, SUBJECTS, _sentence


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        (
            "A person with long hair in a green long-sleeved shirt and brown trousers performs a dance, "
            "turning left on a tiled floor near a crate",
            "a person performs a dance, turning left",
        ),
        ("A woman in a blue dress walks slowly across the park", "a woman walks slowly"),
        ("a man jumps over a bench in front of a building", "a man jumps over a bench"),
        (
            "A young boy wearing a yellow jacket is running quickly toward the camera on a beach.",
            "a boy is running quickly toward the camera",
        ),
        ("In a park, an elderly man practices tai chi slowly.", "a man practices tai chi slowly"),
        (
            "A girl with a ponytail kicks a red ball across the field, smiling at the camera.",
            "a girl kicks a ball",
        ),
        ("Two men in suits are boxing in a ring", "two men are boxing"),
        (
            "A dancer in a white dress spins around and then leaps into the air on a stage.",
            "a dancer spins around and then leaps into the air",
        ),
        ("Someone gets up from the floor and walks away.", "a person gets up from the floor and walks away"),
        (
            "A woman wearing running shoes jogs along the river at a steady pace",
            "a woman jogs at a steady pace",
        ),
        (
            "A man in a gray hoodie skateboards down the street, then jumps off a curb.",
            "a man skateboards, then jumps off a curb",
        ),
        ("Walking slowly across the room, a man waves.", "a man waves, walking slowly"),
        ("A man and a woman dance together in a ballroom", "a man and a woman dance together"),
        ("A man walks in a park. He then sits down on a bench.", "a man walks and sits down"),
        ("A man in a black t-shirt is standing in a kitchen.", "a man is standing"),
    ],
)
def test_extract_motion_prompt(caption: str, expected: str) -> None:
    assert extract_motion_prompt(caption) == expected


def test_extract_motion_prompt_drops_everything_without_motion() -> None:
    assert extract_motion_prompt("A man in a red shirt in a park.") == "a man"
    assert extract_motion_prompt("") == "a person"
    assert extract_motion_prompt("The camera pans across a city at night") == "a person"


APPEARANCES = (
    "a person with long hair in a green long-sleeved shirt and brown trousers",
    "a person in a dark blue short-sleeved shirt and grey shorts",
    *SUBJECTS,
)
SCENES = (
    "",
    "on a tiled floor near a crate",
    "on a checkered floor near a bench and a step",
    "on a textured ground",
)
MANNERS = ("", "slowly", "quickly", "steadily", "at a steady pace")
DIRECTIONS = ("", "forward", "to the right", "turning left", "backward, turning right")


@pytest.mark.parametrize("action", sorted(ACTION_PHRASES))
def test_synthetic_captions_map_to_the_motion_prompt(action: str) -> None:
    """Every verb variant of our caption generator, with appearance and scene words, reduces to the
    sentence that components.motion.captions.motion_prompt builds (same verb, manner and direction)."""
    for verb, subject, scene, manner, direction in itertools.product(
        ACTION_PHRASES[action], APPEARANCES, SCENES, MANNERS, DIRECTIONS
    ):
        caption = _sentence(subject, verb, manner, direction, scene)
        caption = caption[0].upper() + caption[1:]
        assert extract_motion_prompt(caption) == _sentence("a person", verb, manner, direction), caption


def test_extract_motion_prompt_is_lower_case_without_trailing_punctuation() -> None:
    out = extract_motion_prompt("A MAN Runs Quickly!")
    assert out == "a man runs quickly"


@pytest.mark.parametrize(
    ("word", "lemma"),
    [
        ("walks", "walk"), ("running", "run"), ("gets", "get"), ("does", "do"), ("dancing", "dance"),
        ("punches", "punch"), ("lunges", "lunge"), ("hopped", "hop"), ("danced", "dance"),
        ("carries", "carry"), ("swimming", "swim"), ("rolling", "roll"), ("spun", "spin"),
        ("leapt", "leap"), ("lying", "lie"), ("stretches", "stretch"), ("flips", "flip"), ("walk", "walk"),
    ],
)  # fmt: skip
def test_lemmatize(word: str, lemma: str) -> None:
    assert lemmatize(word) == lemma


@pytest.mark.parametrize(
    ("caption", "phrases"),
    [
        ("A man walks forward, turning left on a tiled floor", ["walk", "turn left"]),
        ("Someone gets up from the ground and runs away", ["get up", "run away"]),
        ("A woman in red does a backflip on the beach", ["do a backflip"]),
        ("A boy is jumping", ["jump"]),
        ("A man kicks the red ball and dribbles it", ["kick a ball", "dribble it"]),
        ("A person performs a back flip", ["perform a back flip"]),
        ("Two girls are doing some push-ups", ["do push-ups"]),
        ("a man jumps over a bench", ["jump over a bench"]),
        ("A woman smiles at the camera", []),
    ],
)
def test_action_phrases(caption: str, phrases: list[str]) -> None:
    assert action_phrases(caption) == phrases
