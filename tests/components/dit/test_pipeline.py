"""MoSAPipeline on a tiny random-weight pipeline: persistence, seeds, skeleton placement, cameras,
people and presets, the structure branch's effect, image-to-video, and error messages."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from components.base.token_encoder import TokenTextEncoder
from components.dit.pipeline import MoSAPipeline
from components.motion.camera import build_cameras
from components.motion.config import parse_camera
from components.motion.render import project_motion_to_openpose
from tests.helpers.tiny_pipeline import build_tiny_pipeline

torch.set_num_threads(1)
PROMPT = "a man in a red jacket walks forward across a park"


@pytest.fixture(scope="module")
def text() -> TokenTextEncoder:
    return TokenTextEncoder("minilm", max_tokens=8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, text):
    return build_tiny_pipeline(tmp_path_factory.mktemp("pipe") / "tiny", seed=0, text=text)


@pytest.fixture(scope="module")
def pipe(saved, text) -> MoSAPipeline:
    return MoSAPipeline.from_pretrained(saved, text=text)


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_round_trip_and_seeds(saved, pipe, text, tmp_path) -> None:
    names = {p.name for p in saved.iterdir()}
    assert names == {"config.json", "base", "mosa", "motion"}
    assert not [p for p in saved.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin")]
    config = json.loads((saved / "config.json").read_text())
    assert (
        config["format"] == "mosa-pipeline" and config["version"] == 2 and config["defaults"]["frames"] == 9
    )
    out = pipe(PROMPT, seed=3, progress=False)
    assert out.frames.shape == out.skeleton.shape == (9, 32, 48, 3) and out.frames.dtype == np.uint8
    assert out.joints.shape == (9, 22, 3) and out.all_joints.shape == (1, 9, 22, 3)
    assert out.motion_prompt == "a man walks forward"
    again = MoSAPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "copy"), text=text)
    second = again(PROMPT, seed=3, progress=False)
    assert np.array_equal(out.frames, second.frames) and np.array_equal(out.skeleton, second.skeleton)
    other = pipe(PROMPT, seed=4, progress=False)
    assert _err(out.frames, other.frames) > 5.0
    # the defaults come from config.json; explicit steps change the result
    assert not np.array_equal(pipe(PROMPT, seed=3, steps=2, progress=False).frames, out.frames)


def test_skeleton_is_drawn_where_the_projected_motion_is(pipe) -> None:
    out = pipe(PROMPT, seed=1, progress=False)  # the default camera is the tracking one
    assert np.array_equal(out.skeleton, pipe(PROMPT, seed=1, camera="track", progress=False).skeleton)
    cams = build_cameras(parse_camera("track"), 9, 32, 48, root=out.joints[:, 0])
    kp, conf, _ = project_motion_to_openpose(out.joints, cams)
    drawn = out.skeleton.max(axis=-1) > 0
    assert conf.sum() > 9 * 10  # most keypoints are in view
    for t in range(9):
        visible = kp[t][conf[t] > 0]
        for x, y in np.rint(visible).astype(int):
            assert drawn[t, y, x], (t, x, y)  # a joint disc covers its keypoint
        lo, hi = visible.min(axis=0) - 6, visible.max(axis=0) + 6  # radius 4 discs, 4-px sticks
        ys, xs = np.nonzero(drawn[t])
        assert xs.min() >= lo[0] and xs.max() <= hi[0] and ys.min() >= lo[1] and ys.max() <= hi[1]


def test_cameras_people_and_presets(pipe) -> None:
    fixed = pipe(PROMPT, seed=1, camera="fixed", progress=False)
    orbit = pipe(PROMPT, seed=1, camera="orbit:sweep=120", progress=False)
    assert np.array_equal(orbit.skeleton[0], fixed.skeleton[0])  # the orbit starts at the fixed view
    assert not np.array_equal(orbit.skeleton[-1], fixed.skeleton[-1])
    assert [not np.array_equal(orbit.skeleton[t], fixed.skeleton[t]) for t in (4, 8)] == [True, True]
    two = pipe(PROMPT, seed=1, people=2, camera="fixed", progress=False)
    roots = two.all_joints[:, :, 0]
    assert two.all_joints.shape == (2, 9, 22, 3)
    assert np.allclose(roots[1, 0, 0] - roots[0, 0, 0], 1.0, atol=0.05)

    def width(video: np.ndarray) -> int:
        cols = np.nonzero((video.max(axis=-1) > 0).any(axis=(0, 1)))[0]
        return int(cols.max() - cols.min())

    assert width(two.skeleton) > width(fixed.skeleton) + 4
    upper = pipe(PROMPT, seed=1, preset="upper_body", camera="fixed", progress=False)
    assert 0 < (upper.skeleton.max(-1) > 0).sum() < (fixed.skeleton.max(-1) > 0).sum()


def test_the_structure_branch_steers_the_frames(pipe) -> None:
    out = pipe(PROMPT, seed=2, progress=False)
    plain = pipe(PROMPT, seed=2, use_structure=False, progress=False)
    assert _err(out.frames, plain.frames) > 1.0
    # animation: a driving skeleton replaces the structure transformer
    driven = pipe(PROMPT, seed=2, skeleton=out.skeleton, progress=False)
    assert np.array_equal(driven.frames, out.frames) and driven.joints is None
    moved = np.roll(out.skeleton, 12, axis=2)
    assert _err(pipe(PROMPT, seed=2, skeleton=moved, progress=False).frames, out.frames) > 1.0


def test_image_to_video_starts_from_the_image(pipe) -> None:
    yy, xx = np.mgrid[0:32, 0:48]
    image = np.stack([xx * 5, yy * 7, 255 - xx * 5], axis=-1).clip(0, 255).astype(np.uint8)
    t2v = pipe(PROMPT, seed=0, progress=False)
    i2v = pipe(PROMPT, seed=0, image=image, progress=False)
    assert _err(i2v.frames[0], image) < _err(t2v.frames[0], image)
    # the first frame is (up to the VAE's frame mixing) the VAE's reconstruction of the image
    from components.base.sample import decode_frames
    from components.dit.data import to_unit_video

    z = pipe.base.spec.vae_encode(pipe.base.models.vae, to_unit_video(image[None])[None])
    rest = torch.zeros(1, 2, *z.shape[2:])
    reconstruction = decode_frames(pipe.base, torch.cat([z, rest], dim=1))[0, 0]
    assert _err(i2v.frames[0], reconstruction) < 0.5 * _err(t2v.frames[0], reconstruction)
    assert _err(i2v.frames[-1], t2v.frames[-1]) > 1.0  # the image conditions the later frames too


def test_clear_errors(pipe, saved, tmp_path, text) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        pipe("   ", progress=False)
    with pytest.raises(ValueError, match="bad camera spec 'spin'"):
        pipe(PROMPT, camera="spin", progress=False)
    with pytest.raises(ValueError, match="people must be >= 1"):
        pipe(PROMPT, people=0, progress=False)
    with pytest.raises(ValueError, match="unknown skeleton preset 'legs'"):
        pipe(PROMPT, preset="legs", progress=False)
    with pytest.raises(ValueError, match=r"image must be uint8 \[H,W,3\] = \[32,48,3\]"):
        pipe(PROMPT, image=np.zeros((16, 16, 3), np.uint8), progress=False)
    with pytest.raises(ValueError, match=r"skeleton must be a uint8 video \[9,32,48,3\]"):
        pipe(PROMPT, skeleton=np.zeros((5, 32, 48, 3), np.uint8), progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist; run the train_dit stage"):
        MoSAPipeline.from_pretrained(tmp_path / "nowhere")
    for part, stage in (("mosa", "train_dit"), ("motion", "pretrain_motion"), ("base", "pretrain_base")):
        broken = tmp_path / f"no-{part}"
        shutil.copytree(saved, broken)
        shutil.rmtree(broken / part)
        with pytest.raises(FileNotFoundError, match=f"needs the {part}/ model; run the {stage} stage"):
            MoSAPipeline.from_pretrained(broken, text=text)
