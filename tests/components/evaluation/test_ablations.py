"""The ablation tables: the paper's layout from the variants' metrics files."""

from __future__ import annotations

import json

from components.evaluation.ablations import COLUMNS, LAYOUT, ablation_markdown, load_variants


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
