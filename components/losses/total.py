"""MoSA's training objective (Eq. 9): ``L = L_diff + λ₁ L_mask + λ₂ L_track + λ₃ L_contact``.

The weights default to the paper's (Appendix D: λ₁, λ₂, λ₃ = 0.001, 0.01, 10.0). The mode switches
serve the ablations: ``track_mode`` "static" / "off" (passed on to ``tracking_loss``) and
``contact_enabled``.
"""

from __future__ import annotations

from torch import Tensor

from components.losses.config import LossWeights

TERMS: tuple[str, ...] = ("diff", "mask", "track", "contact")


def combine(losses: dict[str, Tensor], weights: LossWeights | None = None) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the loss terms → ``(total, logs)``.

    ``losses`` maps term names (``diff``, ``mask``, ``track``, ``contact``) to scalar tensors; missing
    terms and switched-off terms contribute 0 (a switched-off term is not even added, so its graph is
    not touched). ``logs`` holds floats: ``<term>`` (unweighted) and ``<term>_weighted`` for every term
    given, and ``total``.
    """
    weights = weights or LossWeights()
    unknown = sorted(set(losses) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; expected some of {list(TERMS)}")
    if not losses:
        raise ValueError(f"no loss terms given; expected some of {list(TERMS)} (at least 'diff')")
    total: Tensor | None = None
    logs: dict[str, float] = {}
    for name in TERMS:
        if name not in losses:
            continue
        value = losses[name]
        if value.numel() != 1:
            raise ValueError(f"loss term {name!r} must be a scalar, got shape {tuple(value.shape)}")
        value = value.reshape(())
        w = weights.weight(name)
        logs[name] = float(value.detach())
        logs[f"{name}_weighted"] = w * logs[name]
        if w == 0.0:
            continue
        total = w * value if total is None else total + w * value
    if total is None:  # every given term is switched off
        total = next(iter(losses.values())).detach().reshape(()) * 0.0
    logs["total"] = float(total.detach())
    return total, logs
