"""Motion-token generator: overfitting, guidance maths, END/PAD handling, causality, determinism."""

from __future__ import annotations

import pytest
import torch

from components.motion.config import GeneratorConfig
from components.motion.generator import MotionGenerator

CFG = GeneratorConfig(
    codebook_size=16, max_tokens=10, dim=32, layers=2, heads=4, text_dim=8, dropout=0.0, cond_drop_prob=0.0
)
SEQS = [torch.tensor([3, 7, 7, 1, 12, 5]), torch.tensor([9, 2, 14, 0])]


def _padded(seqs: list[torch.Tensor], width: int = 8, fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    codes = torch.full((len(seqs), width), fill)
    for i, s in enumerate(seqs):
        codes[i, : len(s)] = s
    return codes, torch.tensor([len(s) for s in seqs])


@pytest.fixture(scope="module")
def trained() -> tuple[MotionGenerator, torch.Tensor]:
    """A generator overfitted on two text → token pairs (150 Adam steps)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = MotionGenerator(CFG.model_copy(update={"cond_drop_prob": 0.2}))
    text = torch.randn(2, 8)
    codes, lengths = _padded(SEQS)
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    for _ in range(200):
        out = gen(codes, lengths, text)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return gen.eval(), text


def test_overfits_two_prompts_and_generates_them_back_greedily(trained):
    gen, text = trained
    codes, lengths = _padded(SEQS)
    assert gen(codes, lengths, text)["loss"] < 0.05
    for guidance in (1.0, 2.5):
        out = gen.generate(text, top_k=1, guidance=guidance, generator=torch.Generator().manual_seed(0))
        assert [s.tolist() for s in out] == [s.tolist() for s in SEQS], guidance
        assert all(s.dtype == torch.long for s in out)
    assert gen.training is False


def test_guidance_one_is_the_conditional_model_and_zero_ignores_the_text(trained):
    gen, text = trained
    tokens = torch.tensor([[3, 7], [9, 2]])
    cond = gen.logits(tokens, text)[:, -1]
    uncond = gen.logits(tokens, text, drop=torch.tensor([True, True]))[:, -1]
    assert torch.equal(gen.guided_logits(tokens, text, 1.0), cond)
    assert torch.allclose(gen.guided_logits(tokens, text, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)
    # s = 0 is the unconditional model: two different prompts give the same logits
    other = torch.randn(2, 8)
    assert torch.allclose(
        gen.guided_logits(tokens, text, 0.0), gen.guided_logits(tokens, other, 0.0), atol=1e-5
    )
    assert not torch.allclose(cond, uncond, atol=1e-3)


def test_end_stops_generation_and_pad_is_never_emitted():
    torch.manual_seed(0)
    gen = MotionGenerator(CFG).eval()
    text = torch.randn(3, 8)
    with torch.no_grad():
        gen.head.weight.zero_()
        gen.head.bias.fill_(0.0)
        gen.head.bias[CFG.end_id] = 50.0  # END is all but certain at every step
    out = gen.generate(text, generator=torch.Generator().manual_seed(1))
    assert [len(s) for s in out] == [1, 1, 1]  # END is masked for the first token only
    out = gen.generate(text, min_tokens=3, generator=torch.Generator().manual_seed(1))
    assert [len(s) for s in out] == [3, 3, 3]
    with torch.no_grad():
        gen.head.bias[CFG.end_id] = -50.0  # END never wins: sequences run to max_tokens
    out = gen.generate(text, max_tokens=7, generator=torch.Generator().manual_seed(1))
    assert [len(s) for s in out] == [7, 7, 7]
    assert all(int(s.max()) < CFG.codebook_size and int(s.min()) >= 0 for s in out)
    assert gen.head.out_features == CFG.codebook_size + 1  # no PAD logit exists


def test_same_seed_same_tokens_and_different_seeds_differ():
    torch.manual_seed(0)
    gen = MotionGenerator(CFG)
    text = torch.randn(2, 8)

    def sample(seed: int) -> list[list[int]]:
        out = gen.generate(
            text, guidance=2.0, top_k=8, temperature=1.3, generator=torch.Generator().manual_seed(seed)
        )
        return [s.tolist() for s in out]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_causal_and_padding_invariant_loss():
    torch.manual_seed(0)
    gen = MotionGenerator(CFG).eval()
    text = torch.randn(2, 8)
    a = torch.tensor([[1, 2, 3, 4, 5]])
    b = torch.tensor([[1, 2, 3, 9, 9]])
    la, lb = gen.logits(a, text[:1]), gen.logits(b, text[:1])
    assert torch.allclose(la[:, :4], lb[:, :4], atol=1e-6)  # positions ≤ 3 never see tokens ≥ 3
    assert not torch.allclose(la[:, 4:], lb[:, 4:])
    codes0, lengths = _padded(SEQS, fill=0)
    codes1, _ = _padded(SEQS, fill=11)
    assert torch.equal(gen(codes0, lengths, text)["loss"], gen(codes1, lengths, text)["loss"])
    with_end = gen(codes0, lengths, text)["loss"]
    without_end = gen(codes0, lengths, text, ends=torch.tensor([False, False]))["loss"]
    assert not torch.allclose(with_end, without_end)


def test_condition_dropout_uses_the_null_embedding_in_training():
    torch.manual_seed(0)
    gen = MotionGenerator(CFG.model_copy(update={"cond_drop_prob": 1.0})).train()
    codes, lengths = _padded(SEQS)
    l1 = gen(codes, lengths, torch.randn(2, 8))["logits"]
    l2 = gen(codes, lengths, torch.randn(2, 8))["logits"]
    assert torch.allclose(l1, l2, atol=1e-6)


def test_full_length_sequences_train_without_an_end_target():
    torch.manual_seed(0)
    gen = MotionGenerator(CFG)
    codes = torch.randint(0, 16, (2, CFG.max_tokens))
    out = gen(codes, torch.tensor([10, 4]), torch.randn(2, 8))
    assert out["logits"].shape == (2, 10, 17) and torch.isfinite(out["loss"])


def test_errors_name_the_problem():
    gen = MotionGenerator(CFG)
    codes, lengths = _padded(SEQS)
    with pytest.raises(ValueError, match=r"text_emb must be \[B, 8\]"):
        gen(codes, lengths, torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"lengths must be"):
        gen(codes, torch.tensor([9, 4]), torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\)"):
        gen(codes + 16, lengths, torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"exceed generator\.max_tokens=10"):
        gen(torch.zeros(1, 12, dtype=torch.long), torch.tensor([12]), torch.randn(1, 8))
    with pytest.raises(ValueError, match=r"max_tokens must be in \[1, 10\]"):
        gen.generate(torch.randn(1, 8), max_tokens=11)
    with pytest.raises(ValueError, match=r"temperature must be > 0"):
        gen.generate(torch.randn(1, 8), temperature=0)
    with pytest.raises(ValueError, match=r"divisible by generator\.heads"):
        GeneratorConfig(dim=30, heads=4)


def test_a_context_limits_what_each_step_sees():
    """With context=3 every greedy token is the argmax after only the 2 tokens before it."""
    torch.manual_seed(4)
    gen = MotionGenerator(CFG).eval()
    with torch.no_grad():
        for p in gen.parameters():  # break the zero-initialised positions so that context matters
            p.add_(0.3 * torch.randn_like(p))
    text = torch.randn(1, 8)
    seq = gen.generate(text, max_tokens=10, min_tokens=10, top_k=1, context=3)[0]
    full = gen.generate(text, max_tokens=10, min_tokens=10, top_k=1)[0]
    assert len(seq) == 10 and not torch.equal(seq, full)
    with torch.no_grad():
        for i in range(2, 10):
            logits = gen.guided_logits(seq[None, i - 2 : i], text, 1.0)
            logits[:, CFG.end_id] = float("-inf")
            assert int(logits.argmax()) == int(seq[i]), i
    with pytest.raises(ValueError, match="context must be >= 2"):
        gen.generate(text, context=1)
