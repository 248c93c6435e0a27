"""Video evaluation metrics: one module per metric behind one contract (``registry``).

``compute_metrics(["fd_effnet_frames", "subject_consistency", ...], samples, MetricContext(...))`` runs
metrics by name; ``available_metrics()`` lists them. Metric modules load on first use.
"""

from components.evaluation.registry import (
    MetricContext,
    MetricResult,
    VideoSample,
    available_metrics,
    compute_metrics,
    get_metric,
    register,
)

__all__ = [
    "MetricContext",
    "MetricResult",
    "VideoSample",
    "available_metrics",
    "compute_metrics",
    "get_metric",
    "register",
]
