"""The tiny-size copy of the repository that end-to-end tests reproduce for real: ``TINY`` params
(4 synthetic clips + one demo video, a few training steps, one ablation variant), ``copy_repo`` (the
tracked and untracked-but-not-ignored files, without outputs or dvc.lock) and ``shrink_params``.
Shared by tests/test_dvc_pipeline.py and the team-stack tests (tests/helpers/team_run.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "ingest": {
        "sources": [
            {"kind": "synthetic", "clips": 4, "seed": 0, "loop_seconds": 0.0},
            {"kind": "demo", "videos": ["sports2d/demo"]},
        ],
        # the DAG's plumbing, not the model, is under test: 9 frames at 64x96 keep every stage cheap
        "clip": {"max_clips_per_video": 2, "frames": 9, "stride": 9, "height": 64, "width": 96},
        "val_fraction": 0.5,  # 2 of the 5 clips held out (by source group): evaluate's references
    },
    "pretrain_motion": {
        "window": 16,
        "variants": {"enabled": False},
        "vqvae": {"width": 32, "depth": 1, "codebook_size": 32, "code_dim": 32},
        "generator": {"codebook_size": 32, "dim": 32, "layers": 1, "heads": 2},
        "evaluator": {"hidden_dim": 32, "embed_dim": 16},
        "train_vqvae": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 6},
        "train_generator": {"steps": 12, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 6},
        "evaluation": {
            "window": 8,
            "stride": 4,
            "replications": 2,
            "mm_prompts": 2,
            "mm_samples": 2,
            "evaluator_steps": 10,
            "evaluators": 1,
        },
    },
    "pretrain_base": {
        "tiny": {
            "layers": 2,  # train_dit copies 2 blocks (mosa.num_structure_blocks)
            "heads": 2,
            "head_dim": 16,
            "latent_channels": 4,
            "vae_block_channels": [4, 4, 4, 4],
            "sample_frames": 9,
            "sample_height": 64,
            "sample_width": 96,
        },
        "vae": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        "vae_decoder": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        "dit": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        "depth": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2},
        "samples": {"steps": 2, "prompts": ["a person walks forward"]},
    },
    "train_dit": {
        "steps": 24,
        "batch_size": 2,
        "warmup_steps": 2,
        "checkpoint_every": 8,
        "aux_every": 8,
        "follow": {"clips": 1, "steps": 2},
    },
    "ablate": {
        "steps": 3,
        "follow": {"clips": 1, "steps": 2},
        "variants": {"track_static": {"losses": {"track_mode": "static"}}},
    },
    "evaluate": {"limit": 2, "steps": 2, "reference_clips": 2, "seeds": [0, 1], "skeleton_clips": 1},
}


REPLACED = {"ablate.variants"}  # taken whole from TINY, not merged into the default's


def merge(dst: dict, patch: dict, prefix: str = "") -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and f"{prefix}{k}" not in REPLACED:
            merge(dst[k], v, f"{prefix}{k}.")
        else:
            dst[k] = v


def shrink_params(path: Path, extra: dict | None = None) -> None:
    """Merge ``TINY`` (then ``extra``) into the params file at ``path``."""
    import yaml

    params = yaml.safe_load(path.read_text())
    merge(params, TINY)
    merge(params, extra or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_repo(dst: Path) -> None:
    """Copy the repository's source files (git-tracked or not ignored) to ``dst``, without outputs."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("metrics/", "reports/", "plots/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    (dst / "dvc.lock").unlink(missing_ok=True)  # the copy's own first reproduction
