"""The texts a clip trains under: its caption, and its motion-only prompt said with other subjects.

Why: the CPU default's base learns its text conditioning from a few dozen synthetic clips whose captions
are long templates (appearance, motion, floor). A user's prompt ("a man jogs along a path") is far from
all of them, and the tiny base answered such prompts with dark bands. Measured on main's model (stop 37,
8 held-out skeletons x 2 seeds, the same skeleton video each time, only the prompt changed): MoSA frames
with a detected person 0.42 with the clip's caption, 0.16 with its motion-only prompt ("a person
dances"), 0.06 with an evaluation prompt. Training under short rewordings too teaches the base and the
MoSA modules that a short motion sentence still means a person of this domain.

The variants, in order (duplicates dropped): the caption (the motion prompt when there is none), then,
when the clip has a motion prompt ``"a person <does something>"``, that prompt with each subject of
``SUBJECTS``. ``pick_variant`` draws which one a training step uses: the first with probability
``1 - short_prob``, else one of the others uniformly.

What it is not: no paraphrasing model, no scene words invented, nothing taken from the evaluation
prompts (only the subject is swapped; the motion words are the clip's own).
"""

from __future__ import annotations

import numpy as np

SUBJECTS = ("a person", "a man", "a woman", "someone")
_LEADS = ("a person ", "someone ", "a man ", "a woman ")


def caption_variants(caption: str | None, motion_prompt: str | None) -> list[str]:
    """The clip's training texts: ``[caption or motion_prompt, motion_prompt with each subject…]``.

    Raises ``ValueError`` when both are empty (a clip must have some text to train under)."""
    caption = (caption or "").strip()
    motion = (motion_prompt or "").strip()
    first = caption or motion
    if not first:
        raise ValueError("a clip needs a caption or a motion prompt to train under; both are empty")
    out = [first]
    lowered = motion.lower()
    lead = next((s for s in _LEADS if lowered.startswith(s)), None)
    if lead is not None:
        rest = motion[len(lead) :].strip()
        if rest:
            out.extend(f"{subject} {rest}" for subject in SUBJECTS)
    elif motion:
        out.append(motion)
    return list(dict.fromkeys(out))


def pick_variant(rng: np.random.Generator, count: int, short_prob: float) -> int:
    """Index of the variant one item trains under: 0 with probability ``1 - short_prob`` (always when the
    clip has one variant), else uniform over ``1 … count-1``."""
    if count < 1:
        raise ValueError(f"a clip has at least one caption variant, got count={count}")
    if not 0.0 <= short_prob <= 1.0:
        raise ValueError(f"short_prob must lie in [0, 1], got {short_prob}")
    u, k = rng.random(), rng.integers(1, max(count, 2))
    return int(k) if count > 1 and u < short_prob else 0
