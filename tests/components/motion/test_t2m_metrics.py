"""Text-to-motion metrics: known answers, invariants and error messages."""

from __future__ import annotations

import numpy as np
import pytest

from components.motion.t2m_metrics import (
    METRIC_NAMES,
    diversity,
    fid,
    frechet_distance,
    mm_dist,
    multimodality,
    r_precision,
    t2m_report,
    with_interval,
)


def random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


# --- Fréchet distance / FID -----------------------------------------------------------------------
def test_frechet_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, cov = rng.normal(size=6), random_spd(6, rng)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_unit_covariance_gaussians_is_squared_mean_distance():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert frechet_distance(mu1, np.eye(5), mu2, np.eye(5)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("m1", "s1", "m2", "s2"), [(0.0, 1.0, 3.0, 2.0), (-1.5, 0.3, 0.5, 0.7), (2.0, 4.0, 2.0, 1.0)]
)
def test_frechet_of_1d_gaussians(m1, s1, m2, s2):
    got = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]), np.array([[s2**2]]))
    assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-10)


def test_frechet_handles_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 10))  # 3 samples in 10-D: rank-2 covariance
    mu, cov = x.mean(0), np.cov(x, rowvar=False)
    d_same = frechet_distance(mu, cov, mu, cov)
    d_shift = frechet_distance(mu, cov, mu + 1.0, cov)
    assert np.isfinite(d_same) and abs(d_same) < 1e-3
    assert d_shift == pytest.approx(10.0, abs=1e-3)


def test_frechet_rejects_non_psd_covariance_and_bad_shapes():
    with pytest.raises(ValueError, match="positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="covariances must be"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_fid_is_symmetric_nonnegative_and_grows_with_shift():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    shifted = b + np.array([2.0, 0, 0, 0])
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-8)
    assert 0 <= fid(a, b) < 0.2
    assert fid(a, shifted) == pytest.approx(4.0, abs=0.5)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fid(a[:1], b)


# --- matching metrics ------------------------------------------------------------------------------
def test_r_precision_is_one_when_motions_equal_texts():
    emb = np.random.default_rng(4).normal(size=(96, 16))
    np.testing.assert_allclose(r_precision(emb, emb, rng=np.random.default_rng(0)), [1.0, 1.0, 1.0])


def test_r_precision_of_independent_embeddings_is_chance():
    rng = np.random.default_rng(5)
    t, m = rng.normal(size=(32 * 300, 16)), rng.normal(size=(32 * 300, 16))
    np.testing.assert_allclose(r_precision(t, m, rng=rng), [1 / 32, 2 / 32, 3 / 32], atol=0.012)


def test_r_precision_counts_a_known_rank_and_drops_the_partial_batch():
    texts = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    motions = texts + np.array([0.0, 1.0])  # each motion 1 from its text, >= 10 from the others
    assert r_precision(texts, motions, batch_size=4, top_k=1)[0] == 1.0
    # swapping motions 0 and 1 puts the match of texts 0 and 1 in 2nd place
    np.testing.assert_allclose(r_precision(texts, motions[[1, 0, 2, 3]], batch_size=4, top_k=2), [0.5, 1.0])
    # 5 pairs, batch 4, no shuffle: the 5th pair (a mismatch) is dropped
    extra_t = np.vstack([texts, [[100.0, 0.0]]])
    extra_m = np.vstack([motions, [[-100.0, 0.0]]])
    assert r_precision(extra_t, extra_m, batch_size=4, top_k=1)[0] == 1.0


def test_r_precision_errors_name_the_fix():
    emb = np.zeros((20, 4))
    with pytest.raises(ValueError, match=r"at least batch_size=32 .* got 20"):
        r_precision(emb, emb)
    with pytest.raises(ValueError, match="pair row by row"):
        r_precision(emb, np.zeros((20, 5)), batch_size=4)
    with pytest.raises(ValueError, match="top_k"):
        r_precision(emb, emb, batch_size=4, top_k=5)


def test_r_precision_batches_of_distinct_motions():
    from components.motion.t2m_metrics import _distinct_batches

    rng = np.random.default_rng(0)
    # 40 motions, 4 windows each; a motion's windows share its text (and here its embedding)
    base = rng.normal(size=(40, 8))
    groups = np.repeat(np.arange(40), 4)
    text = base[groups]
    # random batches hold copies of the right text: even a perfect model misses some top-1
    plain = r_precision(text, text, rng=np.random.default_rng(1))
    assert plain[0] < 0.9
    distinct = r_precision(text, text, rng=np.random.default_rng(1), groups=groups)
    np.testing.assert_allclose(distinct, [1.0, 1.0, 1.0])
    batches = _distinct_batches(np.random.default_rng(2).permutation(160), groups, 32)
    assert len(batches) >= 4
    for b in batches:
        assert len(b) == 32 and len(set(groups[b].tolist())) == 32
    assert len({i for b in batches for i in b.tolist()}) == 32 * len(batches)  # no pair twice
    # t2m_report passes the groups through: the GT row is perfect too
    report = t2m_report(text, text, text, replications=3, groups=groups)
    assert report["gt_r_precision_top1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least batch_size=32 distinct groups, got 20"):
        r_precision(text, text, groups=groups % 20)
    with pytest.raises(ValueError, match="160 pairs"):
        r_precision(text, text, groups=groups[:10])


def test_mm_dist_known_values():
    rng = np.random.default_rng(6)
    t = rng.normal(size=(50, 8))
    assert mm_dist(t, t) == 0.0
    direction = rng.normal(size=8)
    assert mm_dist(t, t + 3.0 * direction / np.linalg.norm(direction)) == pytest.approx(3.0)


def test_diversity_on_known_configurations():
    # vertices of a simplex: every pair of distinct one-hot vectors is sqrt(2) apart
    assert diversity(np.eye(40), times=300, rng=np.random.default_rng(0)) == pytest.approx(np.sqrt(2))
    # points 0..n-1 on a line: E|i - j| over distinct uniform pairs = (n + 1) / 3
    n = 3000
    line = np.arange(n, dtype=float)[:, None]
    assert diversity(line, times=n, rng=np.random.default_rng(1)) == pytest.approx((n + 1) / 3, rel=0.05)
    # identical samples have no diversity; too few samples is an error
    assert diversity(np.ones((10, 3)), rng=np.random.default_rng(2)) == 0.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity(np.ones((1, 3)))


def test_multimodality_known_values():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(6, 1, 5))
    assert multimodality(np.repeat(base, 4, axis=1), rng=rng) == 0.0
    # two generations per prompt, always 2.5 apart
    step = rng.normal(size=(6, 5))
    step = 2.5 * step / np.linalg.norm(step, axis=1, keepdims=True)
    pairs = np.stack([base[:, 0], base[:, 0] + step], axis=1)
    assert multimodality(pairs, times=10, rng=rng) == pytest.approx(2.5)
    with pytest.raises(ValueError, match=">= 2 generations"):
        multimodality(base)


# --- intervals and the report --------------------------------------------------------------------
def test_interval_shrinks_with_replications_and_is_reproducible():
    _, half10 = with_interval(lambda rng: rng.normal(1.0, 1.0), replications=10, seed=0)
    mean1k, half1k = with_interval(lambda rng: rng.normal(1.0, 1.0), replications=1000, seed=0)
    assert half1k < half10 / 5
    assert half1k == pytest.approx(1.96 / np.sqrt(1000), rel=0.1)
    assert abs(mean1k - 1.0) < 3 * half1k
    assert with_interval(lambda rng: rng.normal(), 10, seed=3) == with_interval(
        lambda rng: rng.normal(), 10, seed=3
    )
    vec_mean, vec_half = with_interval(lambda rng: np.array([0.0, rng.uniform()]), 50, seed=1)
    assert vec_mean.shape == (2,) and vec_half[0] == 0.0 and vec_half[1] > 0
    with pytest.raises(ValueError, match="replications must be >= 2"):
        with_interval(lambda rng: 0.0, 1)


def _pairs(n: int = 64, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, d))
    return text, text + 0.1 * rng.normal(size=(n, d))


def test_report_keys_and_reference_row():
    text, real = _pairs()
    rng = np.random.default_rng(9)
    gen = rng.normal(size=real.shape) + 1.0  # unrelated to the texts, shifted: FID ≈ 8
    mm = rng.normal(size=(5, 3, 8))
    rep = t2m_report(text, real, gen, mm_emb=mm, replications=5, diversity_times=50)
    for prefix in ("", "gt_"):
        for name in METRIC_NAMES:
            assert f"{prefix}{name}" in rep and f"{prefix}{name}_ci95" in rep
    assert rep["gt_multimodality"] is None and rep["gt_multimodality_ci95"] is None
    assert rep["multimodality"] > 0
    assert rep["gt_r_precision_top1"] > 0.9  # real motions sit next to their texts
    assert rep["r_precision_top3"] < 0.3  # generated ones are unrelated
    assert rep["fid"] > 5 * rep["gt_fid"] > 0  # bootstrap floor is small but not zero
    assert rep["fid_ci95"] == 0.0  # one fixed generated set: its FID does not vary
    assert rep["replications"] == 5.0 and rep["r_precision_batch_size"] == 32.0


def test_report_on_real_motions_matches_reference_and_uses_replication_sets():
    text, real = _pairs(seed=1)
    rep = t2m_report(text, real, real, replications=4, diversity_times=50)
    assert rep["fid"] == pytest.approx(0.0, abs=1e-6)
    for name in ("r_precision_top1", "r_precision_top3", "mm_dist", "diversity"):
        assert rep[name] == pytest.approx(rep[f"gt_{name}"])
    assert rep["multimodality"] is None

    sets = np.stack([real + 0.05 * k for k in range(3)])  # FID differs per replication
    rep3 = t2m_report(text, real, sets, diversity_times=50)
    assert rep3["replications"] == 3.0 and rep3["fid_ci95"] > 0
    with pytest.raises(ValueError, match="3 replication sets but replications=5"):
        t2m_report(text, real, sets, replications=5)
    with pytest.raises(ValueError, match="set 0 has shape"):
        t2m_report(text, real, real[None, :10])
