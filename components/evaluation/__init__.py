"""Video evaluation metrics: one module per metric behind one contract (``registry``).

``compute_metrics(["fd_effnet_frames", "subject_consistency", ...], samples, MetricContext(...))`` runs
metrics by name; ``available_metrics()`` lists them. Metric modules load on first use.

This package re-exports nothing: import from its modules."""
