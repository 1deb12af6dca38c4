"""Small shared utilities: atomic writes, JSON reading, seeding, environment-located paths.

Import-light on purpose (no NumPy or torch at import time): the command line imports it to build
its parser, and ``emoboost --help`` must not pay for the numeric stack.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import random
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

TEMP_NAME = re.compile(r"^\..+\.tmp$")
"""This package's temporary files: ``.<name>.<random>.tmp`` (:func:`atomic_write_bytes`) and ``.<name>.tmp``
(methods' weight files). A command clears stale ones (left by a kill) only in folders it owns, under its lock."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """``write(f)`` into a temp file beside ``path``, fsync, rename over it: readers never see half a file.

    The one atomic writer of the package (results, store entries, caches, models): a killed or failed
    writer leaves no entry and no temp file, and two processes writing the same entry both rename a
    complete file into place (last one wins, both are valid). ``write`` streams into the open binary
    file, so a large array is never copied into a bytes object first. An ``OSError`` (full disk,
    read-only folder) names ``path``: a failed ``write`` or ``fsync`` alone would only say "No space
    left on device".
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        short = _SHORT_WRITE.search(str(e)) if isinstance(e, OSError) and e.errno is None else None
        if short:
            raise _short_write(short, path) from e
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise type(e)(e.errno, e.strerror, str(path)) from e
        raise
    return path


_SHORT_WRITE = re.compile(r"^(\d+) requested and (\d+) written$")


def _short_write(m: re.Match, path: Path) -> OSError:
    """numpy's ``tofile`` (behind ``np.save`` to a file) reports a short write as "N requested and M
    written", without an errno or a file name. Nearly always the disk is full: said the usual way
    (ENOSPC, naming the file) when the folder has less free space than was asked for; otherwise EIO."""
    import errno
    import shutil

    asked = int(m.group(1))
    try:
        full = shutil.disk_usage(path.parent).free < max(asked, 1)
    except OSError:
        full = True
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"short write ({m.group(0)}; a file size limit or quota?)", str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def try_lock(fd: int) -> bool:
    """Exclusive, non-blocking lock of the open file ``fd``; False when another process holds it.

    The OS drops the lock when its holder dies (``kill -9`` included), so a stale lock never blocks:
    run directories (:mod:`emoboost.outdir`) and store entries being computed
    (:meth:`emoboost.features.store.FeatureStore.claim`) are locked this way."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock, dropped with the process as well
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:  # a file system without locks: work on, but say concurrent writers go unnoticed
        import logging

        logging.getLogger(__name__).warning("cannot lock %s (%s): a second process writing it would not be "
                                            "detected", fd, e)
    return True


def remove_stale_temps(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete files named like :data:`TEMP_NAME` in ``folder`` (and below it); returns what was removed.

    Only for folders the caller owns and holds the lock of: a temp file there belongs to a writer
    that died. Symbolic links are neither followed nor removed.
    """
    removed: list[Path] = []
    if not folder.is_dir() or folder.is_symlink():
        return removed
    for root, dirs, files in os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]:
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            p = Path(root) / name
            if TEMP_NAME.match(name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def read_json(path: str | Path, what: str | None = None) -> object:
    """Parse a JSON file; a missing, unreadable or malformed file raises one line naming it.

    ``what`` describes the file in the message (e.g. "model config"). Missing files raise
    ``FileNotFoundError``; bad content raises ``ValueError`` (``json.JSONDecodeError`` alone names
    no file).
    """
    path = Path(path)
    broken = f"broken {what}: " if what else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what or 'file'} does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {broken}not valid JSON (not UTF-8 text: {e.reason})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {broken}not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e


def default_cache_dir() -> str:
    """Feature and download cache: $EMOBOOST_CACHE, else ~/.cache/emoboost."""
    return os.environ.get("EMOBOOST_CACHE", str(Path.home() / ".cache" / "emoboost"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (when a method loaded it) so reruns give identical numbers on CPU."""
    import sys

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:  # torch methods import it before seeding; pooled probes never load it
        sys.modules["torch"].manual_seed(seed)


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; any other name is checked.

    Why a string: methods and configs keep it as plain data, and the device never changes what a run
    *is* (results from cpu and cuda are the same experiment, equal up to float rounding), so it is a
    runtime option, not a method parameter. A device this machine lacks is a one-line error.
    """
    import torch

    name = str(name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"unknown device {name!r} (use {DEVICES})") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA device is visible to torch {torch.__version__} "
                             "(CPU build, or CUDA_VISIBLE_DEVICES empty); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r} (use {DEVICES})")
    return str(dev)


def machine_line(device: str = "auto") -> str:
    """CPU, threads and torch's device, without importing torch for a run that never needed it (pooled probes)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return f"{platform.machine()} {os.cpu_count()} CPU, threads {os.environ.get('OMP_NUM_THREADS', 'default')} (torch not used)"
    dev = resolve_device(device)
    name = f" ({torch.cuda.get_device_name(torch.device(dev))})" if dev.startswith("cuda") else ""
    return f"{platform.machine()} {os.cpu_count()} CPU, torch threads {torch.get_num_threads()}, device {dev}{name}"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's or ``taskset``'s share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def bound_threads(n: Any, what: str = "--threads") -> int:
    """A thread count checked against this machine: below 1 (or not a whole number) is refused in one line;
    above the usable cores it is clamped to them with one warning line.

    Why clamp: more compute threads than cores never runs faster, and each one costs a stack and, in
    onnxruntime, its own buffers, so ``--threads 99999`` would spend gigabytes on threads that wait;
    a script written for a larger machine still runs, at the speed this one allows."""
    import logging

    if isinstance(n, bool) or not isinstance(n, (int, float)) or not float(n).is_integer():
        raise ValueError(f"{what} must be a whole number of threads, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{what} must be at least 1, got {n}")
    cores = usable_cores()
    if n > cores:
        logging.getLogger("emoboost").warning("%s %d is more than the %d usable CPU core(s) here; using %d",
                                              what, n, cores, cores)
        return cores
    return n


def shared_root() -> Path:
    """The read-only shared folder (corpora + offline weights): $EMOBOOST_SHARED or ../shared."""
    env = os.environ.get("EMOBOOST_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared"


def parse_value(v: str):
    """YAML scalar parsing for CLI overrides: 1e-3 -> float, true -> bool, [1,2] -> list, abc -> str."""
    import yaml

    try:
        out = yaml.safe_load(v)
    except yaml.YAMLError:
        return v
    if isinstance(out, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(out)
        except ValueError:
            return out
    return out


def import_attr(spec: str) -> Any:
    """'pkg.module:attr' -> attr (lazy registry imports)."""
    mod, _, attr = spec.partition(":")
    return getattr(importlib.import_module(mod), attr)


@contextmanager
def library_errors(where: str) -> Iterator[None]:
    """A ValueError raised inside scikit-learn (its wording: "n_splits=3 cannot be greater than ...") gets
    ``where`` (the fold, seed and method) in front, so the line says which fit failed; errors of our own
    code already speak in the user's terms and pass as they are."""
    try:
        yield
    except ValueError as e:
        tb, origin = e.__traceback__, ""
        while tb is not None:
            origin = tb.tb_frame.f_globals.get("__name__", "") or origin
            tb = tb.tb_next
        if origin.split(".")[0] != "sklearn":
            raise
        raise ValueError(f"{where} could not be fitted on this fold's training data (scikit-learn: {e})") from e
