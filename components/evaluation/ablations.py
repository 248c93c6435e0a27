"""The ablation tables in the paper's layout, from the ``ablate@<variant>`` stages' metrics files.

Each variant folder holds ``metrics.json`` (``flows/ablate.py``). Rows are grouped as in the paper's
ablations: the base alone vs the decoupled model, the structure branch (off / 2D / 3D), HADC
(off / without W / on), the tracking loss (off / static / temporal weights) and the contact loss
(off / on); the full model (``mosa_full``: 2D, HADC on, temporal tracking, contact on) is the
reference row of every group. Columns are what we can measure on the CPU default, named for what
they compute (no FVD/CLIPSIM without their models).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from components.dit.config import TrainDiTParams
from components.evaluation.config import AblateParams

FULL = "mosa_full"
# (group, [(row label, variant)]) in the paper's order.
LAYOUT: list[tuple[str, list[tuple[str, str]]]] = [
    ("Structure–appearance decoupling", [("base model alone", "base_alone"), ("+ decoupling (MoSA)", FULL)]),
    ("Structure branch", [("off", "base_alone"), ("2D", FULL), ("3D", "structure_3d")]),
    ("HADC modules", [("off (w/o HADC)", "hadc_off"), ("w/o W", "hadc_no_w"), ("on", FULL)]),
    (
        "Dense tracking loss",
        [("off", "track_off"), ("static weights", "track_static"), ("temporal weights", FULL)],
    ),
    ("Contact loss", [("off", "contact_off"), ("on", FULL)]),
]
# (metrics.json key, column header, higher is better)
COLUMNS: list[tuple[str, str, bool]] = [
    ("mosa_skeleton_mask_iou", "skeleton_mask_iou ↑", True),
    ("mosa_person_region_l1", "person_region_l1 ↓", False),
    ("fd_effnet_frames", "fd_effnet_frames ↓", False),
    ("subject_consistency", "subject_consistency ↑", True),
    ("motion_smoothness", "motion_smoothness ↑", True),
    ("temporal_jerk", "temporal_jerk ↓", False),
    ("loss_diff", "L_diff (train)", False),
]


def load_variants(folder: Path | str) -> dict[str, dict[str, Any]]:
    """``{variant: metrics}`` for every ``<folder>/<variant>/metrics.json`` (missing folder: empty)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    out = {}
    for f in sorted(folder.glob("*/metrics.json")):
        out[f.parent.name] = json.loads(f.read_text(encoding="utf-8"))
    return out


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def ablation_markdown(results: dict[str, dict[str, Any]], steps: int | None = None) -> str:
    """The tables (one per group, the paper's layout) as markdown; variants not run show as such."""
    lines = ["# Ablations (CPU default: small but real)", ""]
    if steps is not None:
        lines.append(f"Each variant trains the MoSA modules for {steps} steps on the default data; ")
    lines += [
        "metrics on the held-out clips' following check (same prompt, seed and skeleton per variant).",
        "`skeleton_mask_iou`: IoU of the moving foreground with the skeleton region; `person_region_l1`:",
        "mean |generated − ground truth| inside the dilated person mask; `fd_effnet_frames`: Fréchet",
        "distance of EfficientNet-Lite0 frame features to the held-out clips (a substitute, not FVD).",
        "Structure branch: *2D* trains and tests on skeletons drawn from detected 2D keypoints (the",
        "annotate stage); *3D* on skeletons projected from the clips' 3D joints (synthetic clips only),",
        "the structure MoSA generates at inference. Rows marked *not run* have no variant in params.yaml",
        "`ablate.variants`.",
        "",
    ]
    header = "| setting | variant | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|---|---|" + "---|" * len(COLUMNS)
    for group, rows in LAYOUT:
        lines += [f"## {group}", "", header, rule]
        for label, variant in rows:
            res = results.get(variant)
            cells = [_cell(res.get(key)) for key, _, _ in COLUMNS] if res else ["not run"] * len(COLUMNS)
            lines.append(f"| {label} | `{variant}` | " + " | ".join(cells) + " |")
        lines.append("")
    extra = sorted(set(results) - {v for _, rows in LAYOUT for _, v in rows})
    if extra:
        lines += ["## Other variants", "", header, rule]
        for variant in extra:
            res = results[variant]
            lines.append(
                f"| – | `{variant}` | " + " | ".join(_cell(res.get(k)) for k, _, _ in COLUMNS) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def variant_params(train: TrainDiTParams, ablate: AblateParams, variant: str) -> TrainDiTParams:
    """``train_dit``'s params with the variant's ``mosa``/``losses`` switches, steps and follow check.

    The variant's example cache is its own folder (inside its checkpoints out): ``train_dit``'s cache
    is that stage's output and must not change under it (``seed_cache`` links its files in)."""
    if variant not in ablate.variants:
        raise KeyError(
            f"unknown ablation variant {variant!r}; params.yaml ablate.variants has {sorted(ablate.variants)}"
        )
    patch = ablate.variants[variant]
    data = train.model_dump(mode="json")
    data["mosa"] = {**data["mosa"], **patch.get("mosa", {})}
    data["losses"] = {**data["losses"], **patch.get("losses", {})}
    data.update(
        steps=ablate.steps,
        warmup_steps=min(train.warmup_steps, ablate.steps),
        checkpoint_every=0,
        checkpoints=str(ablate.checkpoints / variant),
        cache=str(ablate.checkpoints / variant / "cache"),
        follow=ablate.follow.model_dump(mode="json"),
    )
    return TrainDiTParams(**data)
