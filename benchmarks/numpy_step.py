"""The numpy step of the mixed workload.  This module imports numpy at top
level, so it cannot be imported in a worker interpreter: interpool runs its
functions through the pool's fallback (Pool(fallback=...))."""

import numpy as np


def link_spectrum(targets: list[int], size: int = 96) -> float:
    """A page's links as a size x size matrix (link i -> target, folded):
    its largest singular value (LAPACK's SVD; numpy releases the GIL there)."""
    m = np.zeros((size, size))
    t = np.asarray(targets, dtype=np.int64)
    np.add.at(m, (np.arange(len(t)) % size, t % size), 1.0)
    m += np.eye(size) * 0.5
    return float(np.linalg.svd(m, compute_uv=False)[0])
