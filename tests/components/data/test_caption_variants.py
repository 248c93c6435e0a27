"""Caption variants: the caption first, then the clip's motion prompt with each subject; the draw rate."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.caption_variants import SUBJECTS, caption_variants, pick_variant


def test_variants_keep_the_caption_first_and_swap_only_the_subject() -> None:
    got = caption_variants(
        "A person with long hair in a blue shirt dances on a checkered floor", "a person dances"
    )
    assert got == [
        "A person with long hair in a blue shirt dances on a checkered floor",
        "a person dances",
        "a man dances",
        "a woman dances",
        "someone dances",
    ]
    assert len(got) == 1 + len(SUBJECTS)
    # a motion prompt that starts with another subject is rewritten the same way, case kept after it
    assert caption_variants(None, "Someone kicks, turning left")[1:] == [
        "a person kicks, turning left", "a man kicks, turning left", "a woman kicks, turning left",
        "someone kicks, turning left",
    ]  # fmt: skip


def test_clips_without_a_usable_motion_prompt_keep_what_they_have() -> None:
    assert caption_variants("a man jumps down from a shed roof", None) == [
        "a man jumps down from a shed roof"
    ]
    assert caption_variants("a cat", "the dog runs") == ["a cat", "the dog runs"]
    assert caption_variants("", "a person") == ["a person"]  # nothing after the subject: no rewording
    with pytest.raises(ValueError, match="needs a caption or a motion prompt"):
        caption_variants("  ", None)


def test_pick_variant_draws_the_caption_at_one_minus_the_rate() -> None:
    rng = np.random.default_rng(0)
    picks = np.array([pick_variant(rng, 5, 0.3) for _ in range(4000)])
    assert abs((picks == 0).mean() - 0.7) < 0.03
    short = picks[picks > 0]
    assert set(short.tolist()) == {1, 2, 3, 4}
    assert np.bincount(short)[1:].min() > 0.2 * len(short)  # uniform over the short ones
    assert {pick_variant(rng, 1, 1.0) for _ in range(50)} == {0}  # one variant: always the caption
    assert {pick_variant(rng, 5, 0.0) for _ in range(50)} == {0}
    assert 0 not in {pick_variant(rng, 5, 1.0) for _ in range(50)}
    with pytest.raises(ValueError, match="short_prob must lie in"):
        pick_variant(rng, 3, -0.1)
    with pytest.raises(ValueError, match="at least one caption variant"):
        pick_variant(rng, 0, 0.5)
