"""Text-to-motion metrics of Guo et al. (2022) on evaluator embeddings, with 95% intervals.

All functions take plain arrays of embeddings (one row per motion or text), so any evaluator can
feed them; distances are Euclidean, as in the literature. ``t2m_report`` computes the whole table
for generated motions and, as the reference row (prefix ``gt_``), for the real motions.

Randomness (batch shuffles, random pairs, bootstrap) comes only from the ``rng`` arguments, so a
report is reproducible from its seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

Z_95 = 1.96


def _as_matrix(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _paired(text_emb: np.ndarray, motion_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _as_matrix(text_emb, "text_emb")
    m = _as_matrix(motion_emb, "motion_emb")
    if t.shape != m.shape:
        raise ValueError(
            f"text_emb {t.shape} and motion_emb {m.shape} must pair row by row with the same dimension"
        )
    return t, m


# --- Fréchet distance -----------------------------------------------------------------------------
def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = |mu1 − mu2|² + tr(S1 + S2 − 2 (S1 S2)^½). If the matrix square root is not finite
    (singular product), ``eps``·I is added to both covariances; tiny imaginary parts from
    numerical error are dropped, large ones raise.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"means must be vectors of one length, got {mu1.shape} and {mu2.shape}")
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be [{d},{d}] to match the means, got {s1.shape} and {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(d) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"sqrtm(S1 S2) has imaginary part {np.abs(covmean.imag).max():.3g}; "
                "covariances are not positive semi-definite"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def gaussian_stats(emb: np.ndarray, name: str = "emb") -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of embeddings [N, D]; needs N ≥ 2."""
    x = _as_matrix(emb, name, min_rows=2)
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def fid(real_emb: np.ndarray, gen_emb: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to real and generated embeddings."""
    mu1, s1 = gaussian_stats(real_emb, "real_emb")
    mu2, s2 = gaussian_stats(gen_emb, "gen_emb")
    if mu1.shape != mu2.shape:
        raise ValueError(f"real_emb dim {mu1.shape[0]} != gen_emb dim {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


# --- matching metrics -----------------------------------------------------------------------------
def r_precision(
    text_emb: np.ndarray,
    motion_emb: np.ndarray,
    batch_size: int = 32,
    top_k: int = 3,
    rng: np.random.Generator | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Top-1..top_k retrieval accuracy of the matching motion among ``batch_size`` candidates.

    Pairs (row i of each) are shuffled by ``rng`` (kept in order without one), cut into batches
    of ``batch_size`` (the last partial batch is dropped), and for each text the motions of its
    batch are ranked by distance (stable order on ties). Returns [top_k] cumulative accuracies.

    ``groups`` (one label per pair, e.g. the source motion of each evaluation window): no batch
    holds two pairs of one group, as in Guo et al., where every pair of a batch is a different
    motion (several windows of one motion share a text, and a copy of the right text among the
    candidates is a miss no model can avoid). Pairs are dealt in shuffled order to the first batch
    without their group; batches left short are dropped.
    """
    t, m = _paired(text_emb, motion_emb)
    if top_k < 1 or top_k > batch_size:
        raise ValueError(f"top_k must be in [1, batch_size={batch_size}], got {top_k}")
    n = t.shape[0]
    if n < batch_size:
        raise ValueError(
            f"r_precision needs at least batch_size={batch_size} text/motion pairs, got {n}; "
            "evaluate more prompts or pass a smaller batch_size (and report it)"
        )
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if groups is None:
        batches = [order[b * batch_size : (b + 1) * batch_size] for b in range(n // batch_size)]
    else:
        batches = _distinct_batches(order, np.asarray(groups), batch_size)
    hits = np.zeros(top_k)
    n_batches = len(batches)
    if n_batches == 0:
        raise ValueError(f"no full batch of {batch_size} pairs with distinct groups could be formed")
    for idx in batches:
        dist = cdist(t[idx], m[idx])
        ranked = np.argsort(dist, axis=1, kind="stable")[:, :top_k]
        match = ranked == np.arange(batch_size)[:, None]
        hits += np.cumsum(match, axis=1).sum(axis=0)
    return hits / (n_batches * batch_size)


def _distinct_batches(order: np.ndarray, groups: np.ndarray, batch_size: int) -> list[np.ndarray]:
    if len(groups) != len(order):
        raise ValueError(f"groups has {len(groups)} labels for {len(order)} pairs")
    n_groups = len(set(groups.tolist()))
    if n_groups < batch_size:
        raise ValueError(
            f"r_precision with groups needs at least batch_size={batch_size} distinct groups, got "
            f"{n_groups}; hold out more motions or pass a smaller batch_size (and report it)"
        )
    open_batches: list[list[int]] = []
    members: list[set] = []
    full: list[np.ndarray] = []
    for i in order.tolist():
        g = groups[i]
        for k, seen in enumerate(members):
            if g not in seen:
                open_batches[k].append(i)
                seen.add(g)
                if len(open_batches[k]) == batch_size:
                    full.append(np.asarray(open_batches.pop(k)))
                    members.pop(k)
                break
        else:
            if batch_size == 1:
                full.append(np.asarray([i]))
                continue
            open_batches.append([i])
            members.append({g})
    return full


def mm_dist(text_emb: np.ndarray, motion_emb: np.ndarray) -> float:
    """Multimodal distance: mean Euclidean distance between each text and its own motion."""
    t, m = _paired(text_emb, motion_emb)
    return float(np.linalg.norm(t - m, axis=1).mean())


def _distinct_pairs(n: int, times: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``min(times, n)`` pairs (i, j), i ≠ j: the i are distinct, each j uniform over the others."""
    k = min(times, n)
    first = rng.choice(n, size=k, replace=False)
    second = (first + rng.integers(1, n, size=k)) % n
    return first, second


def diversity(emb: np.ndarray, times: int = 300, rng: np.random.Generator | None = None) -> float:
    """Mean distance between random pairs of distinct samples.

    Uses ``min(times, N)`` pairs whose first members are distinct (Guo et al. draw ``times``
    without replacement, so they need N ≥ times; clamping keeps small sets usable).
    """
    x = _as_matrix(emb, "emb")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 samples, got {n}")
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    first, second = _distinct_pairs(n, times, rng if rng is not None else np.random.default_rng(0))
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(
    emb_per_prompt: np.ndarray, times: int = 10, rng: np.random.Generator | None = None
) -> float:
    """Mean distance between pairs of generations of the same prompt, averaged over prompts.

    ``emb_per_prompt`` is [P prompts, R generations, D]; per prompt ``min(times, R)`` distinct
    pairs are drawn as in ``diversity``.
    """
    x = np.asarray(emb_per_prompt, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"emb_per_prompt must be [prompts, generations, D], got shape {x.shape}")
    p, r, _ = x.shape
    if p < 1 or r < 2:
        raise ValueError(f"multimodality needs >= 1 prompt with >= 2 generations each, got {p}×{r}")
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    if not np.isfinite(x).all():
        raise ValueError("emb_per_prompt contains NaN or inf")
    rng = rng if rng is not None else np.random.default_rng(0)
    per_prompt = []
    for i in range(p):
        first, second = _distinct_pairs(r, times, rng)
        per_prompt.append(np.linalg.norm(x[i, first] - x[i, second], axis=1).mean())
    return float(np.mean(per_prompt))


# --- replications -----------------------------------------------------------------------------------
def _replication_rngs(replications: int, seed: int) -> list[np.random.Generator]:
    if replications < 2:
        raise ValueError(f"replications must be >= 2 to estimate an interval, got {replications}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(replications)]


def _mean_ci(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1.96·std/√n over axis 0 (population std, ddof=0, as Guo et al. report it)."""
    return values.mean(axis=0), Z_95 * values.std(axis=0) / np.sqrt(values.shape[0])


def with_interval(
    fn: Callable[[np.random.Generator], float | np.ndarray], replications: int, seed: int = 0
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """(mean, 95% half-width) of ``fn(rng)`` over independent replications.

    Replication r gets its own generator spawned from ``seed``; the half-width is
    1.96·std/√n (population std). Works elementwise for array-valued ``fn`` (e.g. R-precision
    top-1..3).
    """
    values = np.stack(
        [np.asarray(fn(rng), dtype=np.float64) for rng in _replication_rngs(replications, seed)]
    )
    mean, half = _mean_ci(values)
    if mean.ndim == 0:
        return float(mean), float(half)
    return mean, half


# --- the full table ---------------------------------------------------------------------------------
METRIC_NAMES = (
    "fid", "r_precision_top1", "r_precision_top2", "r_precision_top3", "mm_dist", "diversity",
    "multimodality",
)  # fmt: skip


def _row(
    text: np.ndarray,
    real: np.ndarray,
    gen_sets: np.ndarray,
    mm_emb: np.ndarray | None,
    bootstrap_fid: bool,
    replications: int,
    seed: int,
    batch_size: int,
    diversity_times: int,
    mm_times: int,
    groups: np.ndarray | None = None,
) -> dict[str, float | None]:
    """One table row: replication r uses ``gen_sets[r % len(gen_sets)]`` and its own generator."""
    values = []
    fid_of_set: dict[int, float] = {}  # a reused set has one FID; sqrtm of [D,D] is the slow part
    for r, rng in enumerate(_replication_rngs(replications, seed)):
        k = r % len(gen_sets)
        gen = gen_sets[k]
        rp = r_precision(text, gen, batch_size=batch_size, top_k=3, rng=rng, groups=groups)
        div = diversity(gen, diversity_times, rng)
        mm = multimodality(mm_emb, mm_times, rng) if mm_emb is not None else np.nan
        if bootstrap_fid:  # drawn last so both rows share the batching and pair draws above
            fd = fid(real, gen[rng.integers(0, len(gen), size=len(gen))])
        else:
            if k not in fid_of_set:
                fid_of_set[k] = fid(real, gen)
            fd = fid_of_set[k]
        values.append([fd, *rp, mm_dist(text, gen), div, mm])
    mean, half = _mean_ci(np.asarray(values))
    out: dict[str, float | None] = {}
    for name, m, h in zip(METRIC_NAMES, mean, half, strict=True):
        finite = bool(np.isfinite(m))
        out[name] = float(m) if finite else None
        out[f"{name}_ci95"] = float(h) if finite else None
    return out


def t2m_report(
    text_emb: np.ndarray,
    real_motion_emb: np.ndarray,
    gen_motion_emb: np.ndarray,
    mm_emb: np.ndarray | None = None,
    replications: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    diversity_times: int = 300,
    mm_times: int = 10,
    groups: np.ndarray | None = None,
) -> dict[str, float | None]:
    """All metrics for generated motions and for the real ones (``gt_`` prefix), with 95% intervals.

    Row i of ``text_emb`` [N, D] and ``real_motion_emb`` [N, D] is one real text–motion pair.
    ``gen_motion_emb`` is one generation per text, either [N, D] (reused by every replication,
    so only batching and pair sampling vary) or [Rep, N, D] (replication r uses set r, as when
    the generator is sampled anew per replication; ``replications`` then defaults to Rep).
    ``mm_emb`` [P, R, D] holds R generations of P prompts for MultiModality (``None`` → null).

    Reference row: real motions replace generated ones; for ``gt_fid`` each replication compares
    a bootstrap resample of the real set with the real set, so it measures the finite-sample
    floor of FID rather than being exactly 0; ``gt_multimodality`` is null (one real motion per
    text). ``groups`` labels the pairs' source motions for R-precision batching (see
    ``r_precision``). Extra keys: ``replications``, ``r_precision_batch_size``.
    """
    text, real = _paired(text_emb, real_motion_emb)
    gen = np.asarray(gen_motion_emb, dtype=np.float64)
    if gen.ndim == 2:
        gen_sets = gen[None]
        replications = 20 if replications is None else replications
    elif gen.ndim == 3:
        gen_sets = gen
        if replications is None:
            replications = gen.shape[0]
        elif replications != gen.shape[0]:
            raise ValueError(
                f"gen_motion_emb holds {gen.shape[0]} replication sets but replications={replications}; "
                "pass replications=None or one set per replication"
            )
    else:
        raise ValueError(f"gen_motion_emb must be [N, D] or [Rep, N, D], got shape {gen.shape}")
    for r, g in enumerate(gen_sets):
        if g.shape != real.shape:
            raise ValueError(f"gen_motion_emb set {r} has shape {g.shape}, expected {real.shape}")
        if not np.isfinite(g).all():
            raise ValueError(f"gen_motion_emb set {r} contains NaN or inf")
    if mm_emb is not None:
        mm_emb = np.asarray(mm_emb, dtype=np.float64)
        if mm_emb.ndim != 3 or mm_emb.shape[2] != real.shape[1]:
            raise ValueError(f"mm_emb must be [P, R, {real.shape[1]}], got shape {mm_emb.shape}")

    kw = {
        "replications": replications,
        "seed": seed,
        "batch_size": batch_size,
        "diversity_times": diversity_times,
        "mm_times": mm_times,
        "groups": groups,
    }
    out = _row(text, real, gen_sets, mm_emb, bootstrap_fid=False, **kw)
    reference = _row(text, real, real[None], None, bootstrap_fid=True, **kw)
    out.update({f"gt_{k}": v for k, v in reference.items()})
    out["replications"] = float(replications)
    out["r_precision_batch_size"] = float(batch_size)
    return out
