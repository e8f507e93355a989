"""The numpy step of the mixed workload.  This module imports numpy at top
level, so it cannot be imported in a worker interpreter: interpool runs its
functions through the pool's fallback (Pool(fallback=...))."""

import numpy as np


def link_spectrum(targets: list[int], size: int = 1 << 15) -> float:
    """A page's links as a signal (one spike per link, scattered): the
    energy of its 10 strongest frequencies (an FFT, no BLAS: one thread)."""
    signal = np.zeros(size)
    np.add.at(signal, (np.asarray(targets, dtype=np.int64) * 7919) % size, 1.0)
    power = np.abs(np.fft.rfft(signal)) ** 2
    return float(np.sort(power)[-10:].sum())
