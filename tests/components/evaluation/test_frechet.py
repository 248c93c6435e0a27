"""Fréchet distance on feature sets against closed-form Gaussian answers."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.frechet import (
    feature_statistics,
    frechet_distance,
    frechet_distance_features,
    frechet_distance_low_rank,
)


@pytest.fixture
def feats() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))


def test_identical_sets_are_at_distance_zero(feats):
    assert frechet_distance_features(feats, feats.copy()) == pytest.approx(0.0, abs=1e-6)


def test_a_shift_costs_its_squared_length(feats):
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert frechet_distance_features(feats, feats + shift) == pytest.approx(shift @ shift, rel=1e-6)


def test_an_isotropic_scale_costs_one_minus_k_squared_times_the_trace(feats):
    # b = k·a + c has mean kμ + c and covariance k²Σ, so d² = |(k − 1)μ + c|² + tr(Σ)(1 − k)².
    k, c = 2.5, np.full(6, 0.3)
    mu, sigma = feature_statistics(feats)
    gap = (k - 1) * mu + c
    expected = gap @ gap + np.trace(sigma) * (1 - k) ** 2
    assert frechet_distance_features(feats, k * feats + c) == pytest.approx(expected, rel=1e-6)


def test_one_dimensional_closed_form():
    # N(m1, s1²) vs N(m2, s2²): d² = (m1 − m2)² + (s1 − s2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == (
        pytest.approx(4.0 + 1.0)
    )


def test_distance_is_symmetric_and_grows_with_the_gap(feats):
    rng = np.random.default_rng(1)
    other = rng.normal(size=(150, 6))
    d_ab, d_ba = frechet_distance_features(feats, other), frechet_distance_features(other, feats)
    assert d_ab == pytest.approx(d_ba, rel=1e-6)
    assert frechet_distance_features(feats, other + 1.0) > d_ab


def test_fewer_samples_than_dimensions_still_gives_a_finite_distance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 64)), rng.normal(size=(7, 64))
    d = frechet_distance_features(a, b)
    assert np.isfinite(d) and d > 0
    assert frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-5)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="same D"):
        frechet_distance_features(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance_features(np.zeros((1, 3)), np.zeros((4, 3)))


def test_low_rank_path_matches_sqrtm_when_samples_are_fewer_than_dimensions():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(12, 40)), rng.normal(size=(9, 40)) * 1.5 + 0.2
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    assert frechet_distance_low_rank(a, b) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
    assert frechet_distance_features(a, b) == pytest.approx(frechet_distance_low_rank(a, b))
    # and with more samples than dimensions, where the sqrtm path is used
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(70, 5)) + 1.0
    assert frechet_distance_low_rank(a, b) == pytest.approx(frechet_distance_features(a, b), rel=1e-6)
