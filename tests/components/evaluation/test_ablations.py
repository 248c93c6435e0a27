"""The ablation tables: the paper's layout from the variants' metrics files."""

from __future__ import annotations

import json

import pytest

from components.config import validate_section
from components.dit.config import TrainDiTParams
from components.evaluation.ablations import COLUMNS, LAYOUT, ablation_markdown, load_variants, variant_params


def _write(folder, name, **metrics):
    (folder / name).mkdir(parents=True)
    (folder / name / "metrics.json").write_text(json.dumps({"variant": name, **metrics}))


def test_tables_follow_the_layout_and_mark_missing_variants(tmp_path):
    _write(tmp_path, "mosa_full", mosa_skeleton_mask_iou=0.25, mosa_person_region_l1=0.3, steps=100)
    _write(tmp_path, "hadc_off", mosa_skeleton_mask_iou=0.125, fd_effnet_frames=None)
    _write(tmp_path, "extra_variant", temporal_jerk=0.5)
    (tmp_path / "no_metrics").mkdir()  # a folder without metrics.json is not a variant
    results = load_variants(tmp_path)
    assert sorted(results) == ["extra_variant", "hadc_off", "mosa_full"]
    md = ablation_markdown(results, steps=100)
    assert [line[3:] for line in md.splitlines() if line.startswith("## ")] == [
        *(g for g, _ in LAYOUT),
        "Other variants",
    ]
    hadc = md[md.index("## HADC modules") : md.index("## Dense tracking loss")]
    rows = [line for line in hadc.splitlines() if line.startswith("| ") and "`" in line]
    assert rows[0].startswith("| off (w/o HADC) | `hadc_off` | 0.125 | – | – |")
    assert rows[1] == "| w/o W | `hadc_no_w` | " + " | ".join(["not run"] * len(COLUMNS)) + " |"
    assert rows[2].startswith("| on | `mosa_full` | 0.25 | 0.3 |")
    assert "| – | `extra_variant` |" in md and "100 steps" in md


def test_no_folder_means_no_variants(tmp_path):
    assert load_variants(tmp_path / "missing") == {}


def _ablate(**variants):
    return validate_section("ablate", {"steps": 7, "variants": variants})


def test_variant_patches_switches_steps_and_paths_only():
    train = TrainDiTParams(mosa={"hadc": "on"}, losses={"track_mode": "temporal", "mask": 0.5}, steps=400)
    ablate = _ablate(full={}, no_w={"mosa": {"hadc": "no_w"}}, static={"losses": {"track_mode": "static"}})
    full, no_w, static = (variant_params(train, ablate, v) for v in ("full", "no_w", "static"))
    assert full.mosa == train.mosa and full.losses == train.losses
    assert no_w.mosa.hadc == "no_w" and no_w.losses == train.losses
    assert static.losses.track_mode == "static" and static.losses.mask == 0.5
    for p, name in ((full, "full"), (no_w, "no_w")):
        assert p.steps == 7 and p.warmup_steps == 7 and str(p.checkpoints).endswith(f"ablate/{name}")
        assert p.follow == ablate.follow and p.lr == train.lr
        assert p.cache == p.checkpoints / "cache" and p.cache != train.cache
    with pytest.raises(KeyError, match="unknown ablation variant 'nope'"):
        variant_params(train, ablate, "nope")
