"""``MoSAPipeline``: text → 3D motion → skeleton video → human video, in the diffusers style.

A call runs both MoSA branches:

1. the prompt is reduced to a motion-only prompt (``components.annotation.captioning``'s rules extractor;
   the full prompt if nothing is left);
2. the 3D structure transformer (``StructureModel``) generates SMPL-22 joints at its own 20 fps for the
   clip's duration, seeded, and they are resampled (linear in time) to the clip's frame count and fps.
   ``people > 1`` generates one motion per person with seeds ``seed, seed+1, …`` and places them side
   by side along the world x axis, ``PERSON_SPACING`` metres apart, centred on x = 0 (where the
   generated motions start);
3. a camera (``parse_camera`` text such as ``"track"``, the default, ``"fixed"``, ``"orbit"``,
   ``"dolly:end_distance=2"``) is built around the motions' root (per frame for ``track``, so a runner
   keeps the size the training skeletons have instead of running through a fixed camera) and the
   joints are projected to OpenPose-18 and drawn as the DWPose skeleton video at the clip size (the
   convention the annotate stage draws training skeletons in), with a half-body ``preset`` dropping
   keypoints and nearer people drawn over farther ones;
4. the base's sampler (``components.base.sample``) denoises with classifier-free guidance, the MoSA
   transformer taking the skeleton as its structure input (VAE latents or the video itself, per
   ``MoSAConfig.skeleton_encoder``) in both the conditional and the unconditional half.

Image-to-video: the base is a text-to-video model, so an image prompt is applied by inpainting in
latent space, a standard way to condition a T2V model on a first frame: the image is encoded by the
causal VAE as a one-frame clip (its latent is the first latent frame of a clip starting with it), and
at every step the model sees the first latent frame replaced by that latent noised to the current
timestep (fixed seeded noise); after the last step the first latent frame is set to the clean image
latent. The sampler's own first-frame state then never reaches the model or the output, which is
what replacing it in ``x_t`` at every step amounts to. MoSA's I2V variant trains with randomly
translated and scaled skeletons: ``components.dit.data.SkeletonAugment``.

Animation (MoSA's variant without the structure transformer): pass ``skeleton=`` a driving skeleton
video and the motion steps are skipped. ``use_structure=False`` samples with the base alone (same
seed and skeleton, for the skeleton-following comparison in ``follow.py``).

Folder layout (``save_pretrained``, written atomically; no pickles)::

    config.json     {"format": "mosa-pipeline", "version": 2, "defaults": {steps, guidance, frames,
                     height, width, fps}, "motion_guidance", "prompt_extractor"}
                    (version 1 kept the same fields in pipeline.json; still read)
    base/           BaseBundle.save_pretrained
    mosa/           MoSATransformer.save_pretrained
    motion/         StructureModel.save_pretrained
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from components.annotation.captioning import build_prompt_extractor
from components.base.bundle import BaseBundle
from components.base.sample import decode_frames, sample_latents
from components.base.token_encoder import TokenTextEncoder
from components.dit.data import to_unit_video
from components.dit.mosa import MoSATransformer
from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, FormatError, read_config, write_config
from components.motion.camera import build_cameras
from components.motion.config import CameraSpec, parse_camera
from components.motion.render import project_motion_to_openpose, skeleton_video
from components.motion.structure import DEFAULT_GUIDANCE, StructureModel
from components.synthetic.render import resample_joints

if TYPE_CHECKING:
    from components.base.bundle import BaseBundle
    from components.base.token_encoder import TokenTextEncoder

# v1: the same fields in pipeline.json (before the one save/load convention)
FORMAT = ArtifactFormat(
    "mosa-pipeline", 2, "MoSAPipeline.save_pretrained", legacy={1: lambda config: config},
    legacy_file="pipeline.json",
)  # fmt: skip
PERSON_SPACING = 1.0  # metres between people placed side by side
_STAGES = {"base": "pretrain_base", "mosa": "train_dit", "motion": "pretrain_motion"}


class PipelineDefaults(BaseModel):
    """Sampling settings and clip geometry used when a call does not override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(25, ge=1)
    guidance: float = Field(5.0, ge=0)
    frames: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    fps: float = Field(gt=0)


@dataclass
class PipelineOutput:
    """One generated clip.

    ``frames`` and ``skeleton`` are uint8 ``[T,H,W,3]``; ``joints`` the first person's world joints
    ``[T,22,3]`` at the clip's fps and ``all_joints`` everyone's ``[P,T,22,3]`` (both None when a driving
    skeleton was given); ``motion_prompt`` what the structure transformer was asked for.
    """

    frames: np.ndarray
    skeleton: np.ndarray
    joints: np.ndarray | None
    all_joints: np.ndarray | None
    motion_prompt: str


def _missing(root: Path, part: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{root / part} is missing: the pipeline folder needs the {part}/ model; run the {_STAGES[part]} "
        f"stage (dvc repro {_STAGES[part]}) and assemble the pipeline again"
    )


def is_pipeline_folder(path: Path | str) -> bool:
    """Whether ``path`` holds a config written by ``MoSAPipeline.save_pretrained`` (any readable version)."""
    try:
        read_config(path, FORMAT)
    except (FileNotFoundError, FormatError):
        return False
    return True


class MoSAPipeline:
    """Text (or text + image, or text + driving skeleton) → human video; see the module docstring."""

    def __init__(
        self,
        base: BaseBundle,
        mosa: MoSATransformer,
        motion: StructureModel,
        defaults: PipelineDefaults | None = None,
        motion_guidance: float = DEFAULT_GUIDANCE,
        prompt_extractor: str = "rules",
    ) -> None:
        if mosa.base is not base.models.transformer:
            raise ValueError(
                "the MoSA transformer must wrap the bundle's own transformer (base.models.transformer)"
            )
        self.base, self.mosa, self.motion = base, mosa, motion
        self.defaults = defaults or PipelineDefaults(
            frames=base.frames, height=base.height, width=base.width, fps=base.fps
        )
        geometry = {k: getattr(self.defaults, k) for k in ("frames", "height", "width")}
        bundle_geometry = {"frames": base.frames, "height": base.height, "width": base.width}
        if geometry != bundle_geometry or self.defaults.fps != base.fps:
            raise ValueError(
                f"pipeline defaults {geometry} at {self.defaults.fps} fps differ from the base's clips "
                f"{bundle_geometry} at {base.fps} fps: the base generates one clip geometry only"
            )
        self.motion_guidance = float(motion_guidance)
        self.prompt_extractor_name = prompt_extractor
        self._extract = build_prompt_extractor(prompt_extractor)

    # ---- persistence --------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The fields of ``config.json`` (the format header is added on save)."""
        return {
            "defaults": self.defaults.model_dump(),
            "motion_guidance": self.motion_guidance,
            "prompt_extractor": self.prompt_extractor_name,
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the pipeline folder (see the module docstring) atomically; replaces an existing one."""
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            self.base.save_pretrained(tmp / "base")
            self.mosa.save_pretrained(tmp / "mosa")
            self.motion.save_pretrained(tmp / "motion")
            write_config(tmp, FORMAT, self.config_dict())
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, text: TokenTextEncoder | None = None) -> MoSAPipeline:
        """Load a folder written by ``save_pretrained`` (CPU, float32, frozen). ``text`` reuses a loaded
        token encoder (it must be the bundle's)."""

        root = Path(directory)
        hint = "run the train_dit stage (dvc repro train_dit), or pass the path of a saved MoSAPipeline"
        config = read_config(root, FORMAT, hint=hint)
        for part in _STAGES:
            if not (root / part).is_dir():
                raise _missing(root, part)
        base = BaseBundle.from_pretrained(root / "base", text=text)
        spatial = base.spec.vae_spatial_compression(base.models.vae)
        mosa = MoSATransformer.from_pretrained(root / "mosa", base.models.transformer, spatial).eval()
        motion = StructureModel.from_pretrained(root / "motion")
        return cls(
            base,
            mosa,
            motion,
            PipelineDefaults(**config["defaults"]),
            motion_guidance=config.get("motion_guidance", DEFAULT_GUIDANCE),
            prompt_extractor=config.get("prompt_extractor", "rules"),
        )

    # ---- structure branch ---------------------------------------------------------------------
    def motion_prompt(self, prompt: str) -> str:
        """The motion-only prompt for ``prompt`` (the prompt itself if the extractor leaves nothing)."""
        return self._extract(prompt).strip() or prompt.strip()

    def motions(self, motion_prompt: str, seed: int, people: int = 1) -> np.ndarray:
        """World joints ``[P,T,22,3]`` at the clip's fps, people side by side (see the module docstring)."""
        if people < 1:
            raise ValueError(f"people must be >= 1, got {people}")
        d = self.defaults
        seconds = (d.frames - 1) / d.fps
        n = int(np.ceil(seconds * self.motion.fps - 1e-9)) + 1
        out = []
        for p in range(people):
            joints = self.motion.generate(motion_prompt, n, seed=seed + p, guidance=self.motion_guidance)
            joints = resample_joints(joints, self.motion.fps, d.fps, d.frames)
            offset = (p - (people - 1) / 2) * PERSON_SPACING
            out.append(joints + np.array([offset, 0.0, 0.0]))
        return np.stack(out)

    def render_skeleton(
        self, joints: np.ndarray, camera: str | CameraSpec = "track", preset: str = "full"
    ) -> np.ndarray:
        """uint8 skeleton video ``[T,H,W,3]`` of world joints ``[P,T,22,3]`` seen by ``camera``."""
        spec = parse_camera(camera) if isinstance(camera, str) else camera
        d = self.defaults
        people, frames = joints.shape[:2]
        cams = build_cameras(spec, frames, d.height, d.width, root=joints[:, :, 0].reshape(-1, 3))
        kps, confs, depths = zip(*(project_motion_to_openpose(j, cams) for j in joints), strict=True)
        return skeleton_video(
            np.stack(kps, axis=1),
            np.stack(confs, axis=1),
            d.height,
            d.width,
            preset=preset,
            depth=np.stack(depths, axis=1) if people > 1 else None,
        )

    def structure_input(self, skeleton: np.ndarray) -> Tensor:
        """The MoSA model's structure input for a uint8 skeleton video ``[T,H,W,3]`` (batch of one)."""
        video = to_unit_video(skeleton)[None]
        if self.mosa.config.skeleton_encoder == "conv":
            return video
        with torch.no_grad():
            return self.base.spec.vae_encode(self.base.models.vae, video)

    # ---- appearance branch --------------------------------------------------------------------
    def _image_latent(self, image: np.ndarray) -> Tensor:
        d = self.defaults
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.shape != (d.height, d.width, 3):
            raise ValueError(
                f"image must be uint8 [H,W,3] = [{d.height},{d.width},3] (the pipeline's clip size), "
                f"got {img.dtype} {img.shape}; resize it first"
            )
        with torch.no_grad():
            return self.base.spec.vae_encode(self.base.models.vae, to_unit_video(img[None])[None])

    def _predict_fn(self, structure: Tensor | None, image: Tensor | None, seed: int) -> Any:
        spec, base, scheduler = self.base.spec, self.base.models.transformer, self.base.models.scheduler
        noise = None
        if image is not None:
            noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed + 7919))

        def predict(latents: Tensor, timesteps: Tensor, text_emb: Tensor) -> Tensor:
            if image is not None:
                b = latents.shape[0]
                t = timesteps.to(latents.device)
                first = spec.add_noise(
                    scheduler, image.expand(b, -1, -1, -1, -1), noise.expand(b, -1, -1, -1, -1), t
                )
                latents = torch.cat([first.to(latents), latents[:, 1:]], dim=1)
            if structure is None:
                return spec.predict(base, latents, timesteps, text_emb)["v_pred"]
            s = structure.to(latents).expand(latents.shape[0], *structure.shape[1:])
            return self.mosa(None, latents, timesteps, text_emb, s, compute_masks=False)["v_pred"]

        return predict

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        camera: str | CameraSpec = "track",
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        image: np.ndarray | None = None,
        people: int = 1,
        preset: str = "full",
        progress: bool = True,
        skeleton: np.ndarray | None = None,
        use_structure: bool = True,
    ) -> PipelineOutput:
        """Generate one clip for ``prompt`` (see the module docstring for every option)."""

        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(
                "prompt is empty: describe the person and the motion, e.g. 'a man runs and jumps'"
            )
        d = self.defaults
        all_joints = None
        if skeleton is None:
            motion_prompt = self.motion_prompt(prompt)
            all_joints = self.motions(motion_prompt, seed, people)
            skeleton = self.render_skeleton(all_joints, camera, preset)
        else:
            motion_prompt = ""
            skeleton = np.asarray(skeleton)
            if skeleton.dtype != np.uint8 or skeleton.shape != (d.frames, d.height, d.width, 3):
                raise ValueError(
                    f"skeleton must be a uint8 video [{d.frames},{d.height},{d.width},3] (the pipeline's "
                    f"clip), got {skeleton.dtype} {skeleton.shape}"
                )
        structure = (
            self.structure_input(skeleton) if use_structure and self.mosa.config.branch_active else None
        )
        image_latent = self._image_latent(image) if image is not None else None
        latents = sample_latents(
            self.base,
            [prompt],
            steps=steps if steps is not None else d.steps,
            guidance=guidance if guidance is not None else d.guidance,
            seed=seed,
            predict_fn=self._predict_fn(structure, image_latent, seed),
            progress=progress,
        )
        if image_latent is not None:
            latents = torch.cat([image_latent.to(latents), latents[:, 1:]], dim=1)
        frames = decode_frames(self.base, latents)[0]
        return PipelineOutput(
            frames=frames,
            skeleton=skeleton,
            joints=None if all_joints is None else all_joints[0],
            all_joints=all_joints,
            motion_prompt=motion_prompt,
        )
