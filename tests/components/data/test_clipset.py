"""The video training set: ingest + annotate outputs joined, synthetic truth attached."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import validate_section
from components.data import ingest as ing
from components.data.clipset import ClipSetError, clip_table, load_clipset, point_map
from components.io.manifest import to_manifest, write_manifest


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from components.annotation import annotate as an
    from components.annotation.config import AnnotateParams

    work = tmp_path_factory.mktemp("clipset")
    params = validate_section(
        "ingest",
        {
            "sources": [{"kind": "synthetic", "clips": 2, "motions": ["walk", "kick"], "cameras": ["fixed"]}],
            "clip": {
                "frames": 17,
                "stride": 17,
                "fps": 16,
                "height": 96,
                "width": 144,
                "max_clips_per_video": 1,
            },
        },
    )
    ingest_dir, annotate_dir = work / "ingest", work / "annotate"
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, ingest_dir)]
    write_manifest(to_manifest(rows), ingest_dir / "manifest.parquet")
    ap = AnnotateParams(input=ingest_dir, output=annotate_dir)
    ann = an.build_annotators(ap)
    import pandas as pd

    manifest = pd.read_parquet(ingest_dir / "manifest.parquet")
    assert (manifest.status == "kept").all(), manifest[["status", "reason"]]
    out = [an.annotate_clip(r, ap, ingest_dir, annotate_dir, ann) for r in manifest.to_dict("records")]
    assert all(r["status"] == "kept" for r in out), [r.get("reason") for r in out]
    pd.DataFrame(out).to_parquet(annotate_dir / "annotations.parquet")
    return ingest_dir, annotate_dir


def test_samples_carry_video_annotation_and_truth(folders) -> None:
    ingest_dir, annotate_dir = folders
    samples = load_clipset(ingest_dir, annotate_dir)
    assert len(samples) == 2
    for s in samples:
        T, H, W = s.video.shape[:3]
        assert (T, H, W) == (17, 96, 144)
        assert s.annotated and s.mask.shape == (T, H, W) and s.skeleton.shape == s.video.shape
        assert s.tracks.shape[0] == T and s.track_visible.shape == s.tracks.shape[:2]
        assert s.has_depth and s.depth.shape == (T, H, W) and s.K.shape == (T, 3, 3)
        assert s.caption and s.motion_prompt


def test_point_map_puts_body_pixels_near_the_mocap_joints(folders) -> None:
    from components.synthetic.render import GroundTruth

    ingest_dir, _ = folders
    row = clip_table(ingest_dir).iloc[0]
    gt = GroundTruth.load(ingest_dir / row.ground_truth_path)
    pts = point_map(gt.depth, gt.K, gt.R, gt.t)
    body = pts[0][gt.mask[0]]
    assert len(body) > 20 and np.isfinite(body).all()
    # every body surface point lies within 0.4 m of some joint; the ground plane pixels have y ≈ 0
    d = np.linalg.norm(body[:, None] - gt.joints3d[0][None], axis=-1).min(1)
    assert np.percentile(d, 95) < 0.4
    ground = pts[0][(~gt.mask[0]) & np.isfinite(gt.depth[0])]
    assert np.median(np.abs(ground[:, 1])) < 0.05 or len(ground) == 0
    assert np.isnan(pts[0][~np.isfinite(gt.depth[0])]).all()


def test_missing_stage_outputs_name_the_stage(tmp_path) -> None:
    with pytest.raises(ClipSetError, match="dvc repro ingest"):
        clip_table(tmp_path)


def test_joints3d_skeletons_come_from_the_projected_truth(folders) -> None:
    import dataclasses

    from components.data.clipset import NO_3D_JOINTS, select_skeletons
    from components.dit.follow import skeleton_region

    ingest_dir, annotate_dir = folders
    samples = load_clipset(ingest_dir, annotate_dir)
    same, aside = select_skeletons(samples, "pose2d")
    assert aside == [] and all(a is b for a, b in zip(same, samples, strict=True))

    real = dataclasses.replace(samples[0], clip_id="real-clip", truth_keypoints=None, truth_visible=None)
    kept, aside = select_skeletons([*samples, real], "joints3d")
    assert [s.clip_id for s in kept] == [s.clip_id for s in samples]
    assert aside == [{"clip_id": "real-clip", "reason": NO_3D_JOINTS}] and "3D joints" in NO_3D_JOINTS
    for s, k in zip(samples, kept, strict=True):
        assert k.skeleton.shape == s.video.shape and k.skeleton is not s.skeleton
        region = skeleton_region(k.skeleton, thickness=0)
        # every visible projected keypoint inside the frame lies on the drawn skeleton
        T, H, W = s.video.shape[:3]
        hits = total = 0
        for t in range(T):
            for (x, y), vis in zip(s.truth_keypoints[t], s.truth_visible[t], strict=True):
                if vis and 0 <= round(x) < W and 0 <= round(y) < H:
                    total += 1
                    hits += bool(region[t, round(y), round(x)])
        assert total > 0 and hits == total
    with pytest.raises(ValueError, match="pose2d"):
        select_skeletons(samples, "depth")
