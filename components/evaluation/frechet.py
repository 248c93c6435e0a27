"""Fréchet distance between two sets of feature vectors, each summarised by a Gaussian.

d² = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½). With at least as many samples as dimensions the matrix
square root comes from ``scipy.linalg.sqrtm`` (``components.motion.t2m_metrics.frechet_distance``, shared
with the text-to-motion FID). With fewer samples — the usual case for 1280-d frame features of a few
clips — the covariances have rank < D and the same trace is computed exactly from the centred samples:
for Σ₁ = AᵀA/(n−1) and Σ₂ = BᵀB/(m−1) the non-zero eigenvalues of Σ₁Σ₂ are the squared singular values
of ABᵀ/√((n−1)(m−1)), so tr (Σ₁Σ₂)^½ is its nuclear norm (an n×m SVD instead of a D×D sqrtm: 6 s → ms
at D = 1280). Few samples bias the estimate upward; results report sample counts, so compare numbers
only at equal counts.
"""

from __future__ import annotations

import math

import numpy as np

from components.motion.t2m_metrics import frechet_distance, gaussian_stats

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_features"]


def feature_statistics(features: np.ndarray, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D,D] of ``features`` [N,D] (N ≥ 2, finite)."""
    return gaussian_stats(features, name)


def _check(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be [N,D] with N >= 2 (at least 2 rows), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def frechet_distance_low_rank(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Fréchet distance of the Gaussians fitted to ``a`` [N,D] and ``b`` [M,D] via the SVD of the
    centred cross-product (any N, M ≥ 2; fastest when N, M < D)."""
    a, b = _check(a, "generated features"), _check(b, "reference features")
    n, m = len(a), len(b)
    ca, cb = a - a.mean(0), b - b.mean(0)
    diff = a.mean(0) - b.mean(0)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt((n - 1) * (m - 1))
    return float(diff @ diff + (ca * ca).sum() / (n - 1) + (cb * cb).sum() / (m - 1) - 2.0 * cross)


def frechet_distance_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` [N,D] and ``b`` [M,D] (N, M ≥ 2)."""
    a, b = _check(a, "generated features"), _check(b, "reference features")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N,D] and [M,D] with the same D, got {a.shape} and {b.shape}")
    if max(len(a), len(b)) < a.shape[1]:
        d2 = frechet_distance_low_rank(a, b)
    else:
        mu1, s1 = feature_statistics(a, "generated features")
        mu2, s2 = feature_statistics(b, "reference features")
        d2 = frechet_distance(mu1, s1, mu2, s2)
    return max(0.0, d2)  # rounding can push an exact 0 slightly negative
