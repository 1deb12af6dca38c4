"""CPU threads for torch, OpenMP and the BLAS: the command line's default and how it is applied."""

from __future__ import annotations

import os
import sys

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int | None:
    """1 on machines with at most 2 usable cores, else None (the libraries' own choice).

    On 2 cores a second thread buys little when the machine is idle and costs several times the wall
    time when anything else runs (OpenMP/BLAS threads spin waiting for the busy core), so 1 is the
    safe default there; larger machines keep torch's and the BLAS's defaults.
    """
    from emoboost.utils import usable_cores

    return 1 if usable_cores() <= 2 else None


def set_threads(n: int, what: str = "--threads") -> int:
    """Use ``n`` CPU threads in torch, OpenMP and the BLAS (NumPy/SciPy/scikit-learn); returns the count used.

    ``n`` is checked against the machine first (:func:`emoboost.utils.bound_threads`: below 1 refused,
    above the usable cores clamped with a warning). Libraries not imported yet read the environment when
    they load, so setting it costs no import (``emoboost data list`` stays torch-free); the ones already
    loaded are told directly.
    """
    from emoboost.utils import bound_threads

    n = bound_threads(n, what)
    for var in _THREAD_ENV:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return n
        threadpool_limits(limits=n)
    return n


def config_threads(d: dict, given: int | None) -> None:
    """Take ``threads`` out of an experiment config dict and apply it, unless ``--threads`` was given."""
    threads = d.pop("threads", None)
    if threads and not given:
        set_threads(threads, "threads (config key)")
