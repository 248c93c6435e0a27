"""fvd_i3d: the real code path with a tiny TorchScript stand-in for I3D (input layout, scaling, Fréchet
distance of clip embeddings), and None with a reason whenever the model cannot be used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.evaluation.fvd_i3d import NAME, clip_tensor, i3d_embeddings
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from tests.components.evaluation.conftest import panning


class StatsNet(torch.nn.Module):
    """Checks the FVD input contract and embeds a clip as per-channel mean/std over time and space."""

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise ValueError("expected [B,3,T,224,224]")
        if bool(x.min() < -1.0) or bool(x.max() > 1.0):
            raise ValueError("expected values in [-1, 1]")
        return scale * torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "stats.pt"
    torch.jit.script(StatsNet()).save(str(path))
    return path


def clips(seed: int, brightness: int = 0, n: int = 3, frames: int = 16) -> list[VideoSample]:
    out = []
    for i in range(n):
        f = panning(frames, 24, 32, seed=seed + i).astype(np.int16) + brightness
        out.append(VideoSample(np.clip(f, 0, 255).astype(np.uint8), 8.0))
    return out


def test_clip_tensor_layout_and_scaling():
    frames = np.zeros((20, 10, 12, 3), np.uint8)
    frames[:, :, :, 0] = 255
    x = clip_tensor(frames, 16)
    assert x.shape == (3, 16, 224, 224)
    assert torch.allclose(x[0], torch.ones(())) and torch.allclose(x[1:], -torch.ones(()))
    with pytest.raises(ValueError, match="needs 16"):
        clip_tensor(frames[:8], 16)


def test_fvd_with_a_torchscript_model(i3d_file):
    ref = clips(0)
    ctx = MetricContext(i3d_path=i3d_file, reference=ref)
    same = compute_metrics([NAME], ref, ctx)[NAME]
    assert same.value == pytest.approx(0.0, abs=1e-6) and same.higher_is_better is False
    assert same.details["generated_clips"] == same.details["reference_clips"] == 3
    darker = compute_metrics([NAME], clips(10, -60), ctx)[NAME].value
    close = compute_metrics([NAME], clips(10), ctx)[NAME].value
    assert 0 < close < darker


def test_call_kwargs_reach_the_model_and_short_clips_are_skipped(i3d_file):
    ref = clips(0)
    gen = [*clips(10, -60), VideoSample(np.zeros((8, 24, 32, 3), np.uint8), 8.0)]
    base = compute_metrics([NAME], gen, MetricContext(i3d_path=i3d_file, reference=ref))[NAME]
    assert base.details["skipped_short_clips"] == 1 and base.details["generated_clips"] == 3
    scaled = MetricContext(i3d_path=i3d_file, reference=ref, options={NAME: {"call_kwargs": {"scale": 2.0}}})
    assert compute_metrics([NAME], gen, scaled)[NAME].value == pytest.approx(4 * base.value, rel=1e-4)


def test_a_model_with_the_wrong_output_shape_is_named(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean()

    path = tmp_path / "bad.pt"
    torch.jit.script(Bad()).save(str(path))
    with pytest.raises(ValueError, match=r"must return \[B,D\]"):
        i3d_embeddings(torch.jit.load(str(path)), clips(0, n=1), 16)


def test_none_with_reason_without_a_usable_model(tmp_path, i3d_file):
    ref = clips(0, n=2)
    no_path = compute_metrics([NAME], ref, MetricContext(reference=ref))[NAME]
    assert no_path.value is None and "i3d_path" in no_path.reason
    missing = compute_metrics([NAME], ref, MetricContext(i3d_path=tmp_path / "nope.pt", reference=ref))[NAME]
    assert missing.value is None and "not found" in missing.reason
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    broken = compute_metrics([NAME], ref, MetricContext(i3d_path=junk, reference=ref))[NAME]
    assert broken.value is None and "not a loadable TorchScript" in broken.reason
    no_ref = compute_metrics([NAME], ref, MetricContext(i3d_path=i3d_file))[NAME]
    assert no_ref.value is None and "reference" in no_ref.reason
    short = compute_metrics([NAME], clips(3, n=2, frames=8), MetricContext(i3d_path=i3d_file, reference=ref))[
        NAME
    ]
    assert short.value is None and "need >= 2 clips of >= 16 frames" in short.reason
