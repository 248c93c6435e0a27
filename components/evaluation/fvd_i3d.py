"""``fvd_i3d``: Fréchet Video Distance with an I3D network loaded from a local TorchScript file (lower is
better). Without a configured model the result is None with the reason, never a substitute number.

Expected model (``ctx.i3d_path``): a TorchScript module called as ``model(x, **call_kwargs)`` with ``x``
float32 [B,3,T,224,224], RGB scaled to [-1, 1], T = ``clip_length`` (option, default 16), returning
[B,D] — the 400 Kinetics logits or the pooled features (e.g. ``i3d_torchscript.pt`` of the StyleGAN-V
FVD code with ``call_kwargs={"rescale": False, "resize": False, "return_features": True}``, option
``call_kwargs``). Per clip, the first ``clip_length`` frames are resized to 224×224 (bilinear, aspect not
kept, the usual FVD preprocessing); shorter clips are skipped and counted. FVD is the Fréchet distance
between the generated and the reference (``ctx.reference``) clip embeddings.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from components.evaluation.frechet import frechet_distance_features
from components.evaluation.metric_registry import MetricContext, MetricResult, VideoSample, register

NAME = "fvd_i3d"
INPUT_SIZE = 224
DEFAULT_CLIP_LENGTH = 16
DEFAULT_BATCH = 4


def load_i3d(path: str | Path | None, device: str = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript I3D at ``path`` in eval mode; FileNotFoundError/ValueError naming the fix."""
    if path is None or str(path) == "":
        raise FileNotFoundError("FVD needs an I3D TorchScript file; set MetricContext.i3d_path")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"I3D TorchScript file not found: {p} (MetricContext.i3d_path)")
    try:
        model = torch.jit.load(str(p), map_location=device)
    except RuntimeError as exc:
        raise ValueError(f"{p} is not a loadable TorchScript file: {exc}") from exc
    return model.eval()


def clip_tensor(frames: np.ndarray, clip_length: int) -> torch.Tensor:
    """First ``clip_length`` uint8 frames [T,H,W,3] → float32 [3,clip_length,224,224] in [-1, 1]."""
    if len(frames) < clip_length:
        raise ValueError(f"clip has {len(frames)} frames, FVD needs {clip_length}")
    resized = np.stack(
        [
            cv2.resize(np.ascontiguousarray(f), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
            for f in frames[:clip_length]
        ]
    )
    x = torch.from_numpy(resized).float().div(127.5).sub(1.0)
    return x.permute(3, 0, 1, 2).contiguous()


@torch.no_grad()
def i3d_embeddings(
    model: torch.nn.Module,
    samples: list[VideoSample],
    clip_length: int,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH,
    call_kwargs: dict | None = None,
) -> tuple[np.ndarray, int]:
    """Embeddings [N,D] of the clips with ≥ ``clip_length`` frames, and how many clips were skipped."""
    usable = [s for s in samples if s.num_frames >= clip_length]
    out = []
    for i in range(0, len(usable), batch_size):
        x = torch.stack([clip_tensor(s.frames, clip_length) for s in usable[i : i + batch_size]]).to(device)
        y = model(x, **(call_kwargs or {}))
        if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[0] != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"the I3D model must return [B,D] for B={x.shape[0]} clips, got {got}")
        out.append(y.float().cpu().numpy())
    emb = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
    return emb, len(samples) - len(usable)


@register(NAME, higher_is_better=False)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """FVD between ``samples`` and ``ctx.reference`` with the I3D at ``ctx.i3d_path``."""
    clip_length = int(ctx.option(NAME, "clip_length", DEFAULT_CLIP_LENGTH))
    details = {"features": "i3d", "level": "set", "clip_length": clip_length, "model": str(ctx.i3d_path)}
    try:
        model = ctx.cached(("i3d", str(ctx.i3d_path)), lambda: load_i3d(ctx.i3d_path, ctx.device))
    except (FileNotFoundError, ValueError) as exc:
        return MetricResult.unavailable(NAME, str(exc), False, **details)
    if not ctx.reference:
        return MetricResult.unavailable(
            NAME, "no reference clips: set MetricContext.reference to real clips", False, **details
        )
    kwargs = ctx.option(NAME, "call_kwargs", {})
    batch = int(ctx.option(NAME, "batch_size", DEFAULT_BATCH))
    gen, gen_skipped = i3d_embeddings(model, samples, clip_length, ctx.device, batch, kwargs)
    ref, ref_skipped = i3d_embeddings(model, ctx.reference, clip_length, ctx.device, batch, kwargs)
    details |= {
        "generated_clips": len(gen),
        "reference_clips": len(ref),
        "skipped_short_clips": gen_skipped + ref_skipped,
    }
    if len(gen) < 2 or len(ref) < 2:
        why = (
            f"need >= 2 clips of >= {clip_length} frames per set, got {len(gen)} generated and "
            f"{len(ref)} reference"
        )
        return MetricResult.unavailable(NAME, why, False, **details)
    return MetricResult(NAME, frechet_distance_features(gen, ref), [], False, details)
