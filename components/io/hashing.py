"""Content hashes (sha256 hex) of files and decoded frames."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(arr: np.ndarray) -> str:
    """sha256 hex digest of an array's shape, dtype and bytes (decoded clips are hashed this way,
    so the hash does not depend on the encoder's bitstream)."""
    h = hashlib.sha256()
    h.update(str((arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
