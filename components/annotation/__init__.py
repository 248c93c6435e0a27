"""Annotation: 2D pose, person masks, point tracks, captions, motion prompts and motion filters."""
