"""DeepSpeed ZeRO training engine shared by the training stages: config, loop, checkpoints, schedule.

This package re-exports nothing: import from its modules."""
