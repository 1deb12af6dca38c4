"""Output folders a command owns: a marker written first, one writer at a time, stale temp files cleared.

``run``, ``train``, ``export`` and ``benchmark`` write many files into ``--out``; pointed at a folder
they did not create (a Hugging Face model, a user's notes, another command's output) they would
replace its files. So each command kind writes only into a new or empty folder, or into one holding
its own marker file (``.emoboost-run``, ``.emoboost-model``, ``.emoboost-export``,
``.emoboost-benchmark``, ``.emoboost-sweep``), which it writes before anything else.

The marker is also the lock: an exclusive ``flock`` on it is held while the command writes, so a
second process is refused at once, and the OS drops the lock when its holder dies (``kill -9``
included): a stale lock never blocks. Under the lock, temp files a killed writer left behind are
removed (only names of :data:`emoboost.utils.TEMP_NAME`, only in the folders the command owns).

A run directory's results also record what produced them (``emoboost.experiment.run.run_provenance``);
:func:`check_resume` compares those records before any result is reused.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emoboost.utils import read_json, remove_stale_temps, try_lock

log = logging.getLogger(__name__)

KINDS: dict[str, tuple[str, str]] = {
    "run": ("emoboost run", "a run directory"),
    "model": ("emoboost train", "a final model"),
    "export": ("emoboost export", "an ONNX export"),
    "benchmark": ("emoboost benchmark", "a benchmark folder"),
    "sweep": ("emoboost run --sweep", "a sweep folder"),
}
"""Command kind -> (the command, what its folder is called)."""

_HELD: dict[str, str] = {}  # real path -> kind, folders this process holds (train holds its model folder around its CV)


class OutDirError(ValueError):
    """``--out`` is not this command's folder, or holds results another configuration produced."""


class OutDirBusy(RuntimeError):
    """Another process is writing the folder."""


@functools.cache
def code_version() -> str:
    """emoboost's version plus a digest of the package's source files, e.g. ``0.1.0+src.3f2a9c1b04de``.

    Why both: results are comparable only when the same code produced them, and in a checkout the
    version string does not change when a default or a loop is edited; the digest does. Every ``.py``
    file of the installed package counts (relative path and bytes), so any source edit is a new code
    version. Where no source files are readable (a frozen build) the version alone is used. Hashing
    ~600 KB of source takes milliseconds and runs once per process.
    """
    from emoboost import __version__

    digest = source_digest(Path(__file__).resolve().parent)
    return f"{__version__}+src.{digest[:12]}" if digest else __version__


def source_digest(root: Path) -> str | None:
    """SHA-256 over the ``.py`` files below ``root`` (sorted relative paths and contents); None if none."""
    import hashlib

    files = sorted(p for p in root.rglob("*.py") if p.is_file())
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def marker_name(kind: str) -> str:
    return f".emoboost-{kind}"


def owner(path: Path) -> str | None:
    """The command kind whose marker ``path`` holds, or None."""
    for kind in KINDS:
        if (path / marker_name(kind)).is_file():
            return kind
    return None


def check_owner(path: str | Path, kind: str) -> None:
    """Refuse (one line naming the folder and why) unless ``kind`` may write into ``path``: it does not
    exist, is empty, or holds ``kind``'s marker. Reads only."""
    path = Path(path)
    cmd, what = KINDS[kind]
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutDirError(f"{path}: exists and is not a folder; choose another --out")
    found = owner(path)
    if found == kind:
        return
    if found is not None:
        raise OutDirError(f"{path}: holds {KINDS[found][1]} (written by `{KINDS[found][0]}`), not {what}; "
                          f"choose another --out")
    if any(path.iterdir()):
        raise OutDirError(f"{path}: not empty and not written by `{cmd}` (no {marker_name(kind)}); "
                          f"choose a new or empty folder for --out")


def _holder(marker: Path) -> str:
    try:
        pid = json.loads(marker.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        pid = None
    return f" (pid {pid})" if pid else ""


@contextmanager
def claim_dir(path: str | Path, kind: str, clean: tuple[str, ...] = ()) -> Iterator[Path]:
    """Own ``path`` for command ``kind`` while the block runs: refuse a foreign folder, create it with
    its marker, hold the lock, clear stale temp files (top level, and below the ``clean`` subfolders).

    Re-entrant within one process for the same kind. A folder this call created is removed again if
    the block fails before writing anything but the marker.
    """
    path = Path(path)
    key = os.path.realpath(path)
    if _HELD.get(key) == kind:
        yield path
        return
    check_owner(path, kind)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    marker = path / marker_name(kind)
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
    locked = done = False
    try:
        if not try_lock(fd):
            noun = KINDS[kind][1].split(" ", 1)[1]
            raise OutDirBusy(f"{path}: another emoboost process{_holder(marker)} is writing this {noun}; "
                             f"wait for it to finish or choose another --out")
        locked = True
        check_owner(path, kind)  # again under the lock: another command may have claimed it meanwhile
        info = {"kind": kind, "written_by": KINDS[kind][0], "version": code_version(), "pid": os.getpid()}
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        for p in remove_stale_temps(path) + [q for sub in clean for q in remove_stale_temps(path / sub, True)]:
            log.info("removed a stale temp file of a killed writer: %s", p)
        _HELD[key] = kind
        try:
            yield path
            done = True
        finally:
            _HELD.pop(key, None)
    finally:
        if locked and not done and created and [p.name for p in path.iterdir()] == [marker.name]:
            marker.unlink(missing_ok=True)  # nothing but our marker in a folder we created: leave no trace
            try:
                path.rmdir()
            except OSError:
                pass
        os.close(fd)


def writes_into(kind: str, param: str = "out_dir"):
    """Decorator: run the function with its folder argument ``param`` claimed for ``kind`` (:func:`claim_dir`)."""
    import inspect

    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def claimed(*args, **kwargs):
            with claim_dir(sig.bind(*args, **kwargs).arguments[param], kind):
                return fn(*args, **kwargs)
        return claimed
    return wrap


# ---- what produced a folder's results -------------------------------------------------------------
_LABELS = {"data": "data root", "manifest": "manifest content", "features": "encoder fingerprint"}


def _dict_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _dict_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} " + " -> ".join(v if isinstance(v, str) else json.dumps(v) for v in (a, b)))
    return out


def provenance_diff(old: Any, new: dict) -> list[str]:
    """What differs between a result's provenance record and the current one: one phrase each."""
    if not isinstance(old, dict):
        return ["no provenance record (written by an older emoboost)"]
    out = [f"code version {old.get('code')} -> {new['code']}"] if old.get("code") != new["code"] else []
    config = _dict_diff(old.get("config") or {}, new["config"])
    given = {c.split()[0].split(".")[1] for c in config if c.startswith("method_params.")}
    out += [f"config {c}" for c in config]
    out += [f"method parameter {c}" for c in _dict_diff(old.get("method") or {}, new["method"])
            if c.split()[0].split(".")[0] not in given]
    for key, label in _LABELS.items():
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(f"{label} {a} -> {b}" if key != "manifest" else
                       f"{label} {str(a)[:12]} -> {str(b)[:12]} (its files, labels or speakers changed)")
    return out


def check_resume(out: Path, prov: dict, seeds: list[int]) -> None:
    """Refuse, in one line naming what differs, to reuse or mix results another configuration produced.

    Every finished result in ``out/folds`` must carry ``prov``; seeds may be added to a finished run,
    never dropped (its models would stay in the ensemble ``predict`` loads).
    """
    done = sorted((out / "folds").glob("fold*_seed*.json")) if (out / "folds").is_dir() else []
    old_seeds = sorted({int(p.stem.rpartition("_seed")[2]) for p in done if p.stem.rpartition("_seed")[2].isdigit()})
    if set(old_seeds) - set(seeds):
        raise OutDirError(f"{out}: holds results of a different configuration (seeds {old_seeds} -> {list(seeds)}: "
                          f"a run's seeds may only be extended); choose another --out")
    for p in done:
        rec = read_json(p, "fold result")
        diff = provenance_diff(((rec if isinstance(rec, dict) else {}).get("info") or {}).get("provenance"), prov)
        if diff:
            more = f"; {len(diff) - 6} more" if len(diff) > 6 else ""
            raise OutDirError(f"{out}: holds results of a different configuration ({p.name}: {'; '.join(diff[:6])}"
                              f"{more}); resume it only with the same code, settings and data, or choose another --out")
