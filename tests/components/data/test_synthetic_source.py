"""The synthetic ingest source: recipes, rendered clips with ground truth, captions, splits."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import ConfigError, validate_section
from components.data import ingest as ing
from components.data import synthetic_source as syn
from components.io.manifest import to_manifest
from components.io.video import probe, read_frames
from components.motion.deepmimic import list_deepmimic_clips
from components.synthetic.body import BodyStyle
from components.synthetic.render import GroundTruth

CLIP = {"frames": 9, "stride": 9, "fps": 16, "height": 64, "width": 96}


def _params(**synthetic):
    return validate_section("ingest", {"sources": [{"kind": "synthetic", **synthetic}], "clip": CLIP})


def test_recipes_cover_every_motion_and_are_deterministic():
    params = _params(clips=25, seed=3)
    items = [p.item for p in ing.plan(params)]
    assert len(items) == 25
    assert {i.synthetic["motion"] for i in items} == set(list_deepmimic_clips())
    assert items == [p.item for p in ing.plan(params)]
    other = [p.item.synthetic["camera"] for p in ing.plan(_params(clips=25, seed=4))]
    assert other != [i.synthetic["camera"] for i in items]
    assert all(i.kind == "synthetic" and i.group == f"motion:{i.synthetic['motion']}" for i in items)


def test_bad_synthetic_params_are_named():
    with pytest.raises(ValueError, match="moonwalk"):
        ing.plan(_params(clips=2, motions=["walk", "moonwalk"]))
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0\.synthetic\.cameras"):
        _params(clips=2, cameras=["zoom"])
    with pytest.raises(FileNotFoundError, match="new_joint_vecs"):
        ing.plan(_params(clips=2, humanml3d="/nonexistent/HumanML3D"))


def test_rendered_clip_matches_its_ground_truth(tmp_path):
    params = _params(clips=2, motions=["walk", "cartwheel"], seed=1)
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, tmp_path)]
    manifest = to_manifest(rows)
    assert (manifest.status == "kept").all(), manifest.reason.tolist()
    for row in manifest.itertuples():
        info = probe(tmp_path / row.clip_path)
        assert (info.frames, info.height, info.width) == (9, 64, 96)
        gt = GroundTruth.load(tmp_path / row.ground_truth_path)
        assert gt.mask.shape == (9, 64, 96) and gt.joints3d.shape == (9, 22, 3)
        assert gt.captions[0] == row.caption and gt.motion_prompt == row.motion_prompt
        # The written video shows the person where the mask says: person pixels differ from the rest.
        frames = read_frames(tmp_path / row.clip_path, list(range(9))).astype(float)
        assert gt.mask.mean() > 0.01
        visible = gt.visible & (gt.keypoints2d[..., 0] >= 0)
        assert visible.sum() > 0
        # Visible keypoints fall on (or within 2 px of) the person mask.
        t, k = np.nonzero(visible)
        x = np.clip(np.rint(gt.keypoints2d[t, k, 0]).astype(int), 0, 95)
        y = np.clip(np.rint(gt.keypoints2d[t, k, 1]).astype(int), 0, 63)
        near = [
            gt.mask[ti, max(0, yi - 2) : yi + 3, max(0, xi - 2) : xi + 3].any()
            for ti, yi, xi in zip(t, y, x, strict=True)
        ]
        assert all(near)
        assert frames.std() > 5
    walk = manifest[manifest.source.str.contains("walk")].iloc[0]
    style = GroundTruth.load(tmp_path / walk.ground_truth_path).style
    assert syn.colour_name(style.shirt) in walk.caption  # the caption describes what was drawn
    assert "shirt" not in walk.motion_prompt and walk.motion_prompt.startswith("a person")


def test_splits_follow_the_source_motion():
    params = validate_section(
        "ingest",
        {"sources": [{"kind": "synthetic", "clips": 40}], "clip": CLIP, "val_fraction": 0.5},
    )
    by_motion: dict[str, set[str]] = {}
    for p in ing.plan(params):
        key = p.item.synthetic["motion"]
        by_motion.setdefault(key, set()).add(ing.split_for_group(p.item.group, params))
    assert all(len(s) == 1 for s in by_motion.values())
    assert {s for v in by_motion.values() for s in v} == {"train", "val"}


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((200, 30, 30), "red"), ((40, 60, 200), "blue"), ((250, 250, 250), "white"), ((10, 10, 10), "black"),
     ((120, 120, 120), "grey"), ((120, 80, 40), "brown"), ((30, 160, 60), "green")],
)  # fmt: skip
def test_colour_names(rgb, name):
    assert syn.colour_name(rgb) == name


def test_describe_style_and_scene():
    style = BodyStyle(shirt=(200, 30, 30), trousers=(40, 60, 200), sleeves="long", legwear="shorts")
    assert syn.describe_style(style) == "a person in a red long-sleeved shirt and blue shorts"


def test_motion_set_features_stats_and_mirrors(tmp_path):
    import json

    from components.motion.deepmimic import load_deepmimic
    from components.motion.humanml3d import FeatureStats, canonicalize, features_to_joints

    params = _params(clips=2, motions=["walk", "walker/turn_left0"])
    counts = syn.write_motion_set(params.sources, tmp_path)
    index = [json.loads(x) for x in (tmp_path / "motions" / "index.jsonl").read_text().splitlines()]
    assert counts["motions"] == len(index) == 4
    by_id = {x["id"]: x for x in index}
    assert by_id["walker__turn_left0"]["action"] == "turn_left"
    assert by_id["walker__turn_left0~mirror"]["action"] == "turn_right"
    assert "right" in by_id["walker__turn_left0~mirror"]["motion_prompt"]
    feats = np.load(tmp_path / "motions" / "walk.npy")
    assert by_id["walk"]["loop_repeats"] == 3  # 1.27 s a cycle, tiled to the default 3 s
    walk = load_deepmimic("walk", repeats=3).joints
    assert feats.shape == (len(walk) - 1, 263)
    np.testing.assert_allclose(
        features_to_joints(feats.astype(np.float64)), canonicalize(walk)[:-1], atol=1e-4
    )
    stats = FeatureStats.load(tmp_path / "motions" / "stats.npz")
    all_feats = np.concatenate([np.load(tmp_path / "motions" / f"{x['id']}.npy") for x in index])
    np.testing.assert_allclose(stats.mean, all_feats.mean(0), rtol=1e-4, atol=1e-5)


def test_motion_set_loops_ongoing_activities_only(tmp_path):
    """A run (0.8 s cycle) is tiled to loop_seconds, so the text-to-motion set never teaches that a
    run stops after one stride; a jump stays one jump; loop_seconds 0 plays each clip once."""
    import json

    for loop, want in ((3.0, {"run": 4, "jump": 1}), (0.0, {"run": 1, "jump": 1})):
        out = tmp_path / f"loop{loop:g}"
        syn.write_motion_set(_params(clips=1, motions=["run", "jump"], loop_seconds=loop).sources, out)
        index = {
            x["id"]: x for x in map(json.loads, (out / "motions" / "index.jsonl").read_text().splitlines())
        }
        for name, repeats in want.items():
            for key in (name, name + "~mirror"):
                assert index[key]["loop_repeats"] == repeats
        run_seconds = index["run"]["frames"] / index["run"]["fps"]
        assert (run_seconds >= 3.0) == (loop == 3.0)


def test_people_and_scene_pools_repeat_looks_and_leave_unpooled_recipes_alone(tmp_path):
    """``people``/``scenes``: clip i wears person i mod people in look i mod scenes (which holds no box);
    a source without pools keeps its recipes (and so its clip ids)."""
    plain = [p.item.synthetic for p in ing.plan(_params(clips=4, seed=2))]
    assert all("person" not in r and "scene" not in r for r in plain)
    params = _params(clips=4, seed=2, people=2, scenes=1, motions=["walk", "run", "jump", "kick"])
    recipes = [p.item.synthetic for p in ing.plan(params)]
    assert [r["person"] for r in recipes] == [0, 1, 0, 1] and [r["scene"] for r in recipes] == [0] * 4
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, tmp_path)]
    gts = [GroundTruth.load(tmp_path / r["ground_truth_path"]) for r in rows]
    assert gts[0].style == gts[2].style == syn.pooled_style(2, 0)
    assert gts[1].style == gts[3].style != gts[0].style
    look = syn.pooled_look(2, 0)
    for gt in gts:
        assert (gt.scene.sky_top, gt.scene.floor, gt.scene.floor_a, gt.scene.seed) == (
            look.sky_top, look.floor, look.floor_a, look.seed,
        )  # fmt: skip
    assert look.boxes == ()
    with pytest.raises(ConfigError, match=r"people"):
        _params(clips=2, people=0)
