"""Structure generation blocks: ``s_i = B_i(S)``, i = 1..N, features of the skeleton video ``S``.

The skeleton latents go through a trainable copy of the base's patch embedding, so the structure
tokens sit on the same grid (and, for CogVideoX, get the same positional tables) as the video
tokens. Text is included as in the base: CogVideoX's copied joint embedding also projects the text
and its copied blocks update those text tokens alongside; Wan's copied blocks cross-attend to the
base's text tokens. ``B_i`` is a copy of base block ``i`` (``copy.deepcopy``, so it starts from the
pretrained weights) and runs with the base's timestep conditioning and rotary table, as public
CogVideoX control nets do.

Ablation switch ``structure`` (``MoSAConfig.structure``):
- ``"2d"`` (default): ``S`` is the rendered skeleton video (from the ground-truth video's keypoints
  while training, from the structure transformer's projected keypoints at generation).
- ``"3d"``: the same model code; ``S`` is drawn from the projection of the clips' 3D joints, in
  training too (``components.data.clipset.select_skeletons``: synthetic clips only) — the structure
  the 3-D structure transformer gives at generation. Only the data path differs, so nothing in
  this module branches on it.
- ``"off"``: no structure branch; the MoSA model is the plain base.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from components.backbone.spec import BackboneSpec, BlockContext


def copy_block(block: nn.Module) -> nn.Module:
    """A trainable deep copy of a (possibly frozen) base block, in the base block's train/eval mode."""
    clone = copy.deepcopy(block)
    clone.requires_grad_(True)
    clone.train(block.training)
    return clone


class StructureBranch(nn.Module):
    """Copies of the base's patch embedding and first ``num_blocks`` blocks, run on skeleton latents."""

    def __init__(self, spec: BackboneSpec, base: nn.Module, num_blocks: int) -> None:
        super().__init__()
        base_blocks = spec.blocks(base)
        if not 1 <= num_blocks <= len(base_blocks):
            raise ValueError(
                f"num_structure_blocks must be between 1 and the base's {len(base_blocks)} blocks, "
                f"got {num_blocks}"
            )
        self.spec = spec
        self.embedder = spec.structure_embedder(base)
        self.blocks = nn.ModuleList(copy_block(b) for b in list(base_blocks)[:num_blocks])

    def embed(self, latents: Tensor, ctx: BlockContext) -> tuple[Tensor, Tensor]:
        """Skeleton latents ``[B,F,C,h,w]`` → ``(tokens [B,T,D], text tokens)`` before ``B_1``."""
        return self.spec.embed_structure(self.embedder, latents, ctx)

    def step(
        self, index: int, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        """Run ``B_{index+1}``; the returned video tokens are ``s_{index+1}``."""
        return self.spec.run_block(self.blocks[index], hidden, encoder_hidden, ctx)

    def forward(self, latents: Tensor, ctx: BlockContext) -> list[Tensor]:
        """All features ``[s_1, ..., s_N]`` at once (MoSA interleaves ``step`` with the base instead)."""
        hidden, encoder_hidden = self.embed(latents, ctx)
        features = []
        for i in range(len(self.blocks)):
            hidden, encoder_hidden = self.step(i, hidden, encoder_hidden, ctx)
            features.append(hidden)
        return features
