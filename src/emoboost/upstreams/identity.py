"""What identifies an upstream's output, computed from its files without loading any weights.

An upstream's fingerprint is ``<name>-<sha256(identity + code version)[:16]>`` where the identity is
its config (``config.json`` / ``emoboost_upstream.json`` minus load-time fields) plus a hash of its
weight files' bytes. The upstream classes build their ``config_dict()`` with the functions here and
:func:`emoboost.upstreams.fingerprint_spec` calls the same functions on a spec, so the two always
agree, and a cached run or a bundle check never has to build an encoder.

Hashing a file reads it once; the result is remembered in ``file_hashes.json`` under the cache
directory ($EMOBOOST_CACHE, default ``~/.cache/emoboost``), keyed by the file's real path and
(size, mtime_ns, ctime_ns, inode, device). The ctime is what makes the key trustworthy: size, mtime
and inode survive a file rewritten in place and then given its old mtime back (``os.utime``,
``touch -r``, ``cp -p``, ``rsync`` into an existing file), so a key without it would serve the old
weights' hash and the store their old features; the ctime changes on every write or ``utime`` and
cannot be set by a user. Re-hashing instead would cost a read of every multi-GB weight file on every
command, where a stat costs nothing. Files modified (mtime or ctime) in the last few seconds are not
remembered (a rewrite within the file system's timestamp granularity could otherwise keep the old
hash: git's "racy" rule). Entries written by earlier versions (without a ctime) are hashed once again.
A read-only or full cache directory only costs rehashing.

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

HASH_CACHE_FILE = "file_hashes.json"
RACY_SECONDS = 2.0  # files younger than this are hashed but not remembered
_CHUNK = 1 << 22

OWN_UPSTREAM_FILE = "emoboost_upstream.json"
OWN_WEIGHTS_FILE = "model.safetensors"
OWN_FORMAT = "emoboost-pretrained"

WHISPER_HOP = 160  # Whisper log-mel hop (10 ms at 16 kHz)
WHISPER_N_FFT = 400

# Config fields that say where/how a checkpoint was loaded or saved, not what it computes.
VOLATILE_CONFIG_KEYS = (
    "_name_or_path", "name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash",
    "_attn_implementation", "_attn_implementation_autoset", "output_hidden_states", "output_attentions",
    "return_dict", "architectures", "id2label", "label2id", "use_cache",
)

# Files a checkpoint directory may keep its weights in, in the order transformers prefers them.
_SINGLE = ("model.safetensors", "pytorch_model.bin")
_INDEX = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


# ---- the file-hash cache -------------------------------------------------------------------------
def cache_dir() -> Path:
    """$EMOBOOST_CACHE, default ~/.cache/emoboost (the feature cache's default location)."""
    env = os.environ.get("EMOBOOST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "emoboost"


StatKey = tuple[int, int, int, int, int]
_KEY_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")
_memo: dict[str, tuple[StatKey, str]] = {}  # real path -> (stat key, sha256), this process


def _stat_key(st: os.stat_result) -> StatKey:
    """What must be unchanged for a remembered hash to be served (see the module docstring)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # unreadable or corrupt: start afresh, it is only a cache
        log.debug("ignoring hash cache %s (%s)", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _remember(real: str, key: StatKey, digest: str) -> None:
    """Add one entry to the on-disk cache (dropping entries of files that are gone); never raises."""
    from emoboost.utils import atomic_write_text

    path = cache_dir() / HASH_CACHE_FILE
    data = {p: e for p, e in _read_cache(path).items() if isinstance(e, dict) and os.path.exists(p)}
    data[real] = {**dict(zip(_KEY_FIELDS, key)), "sha256": digest}
    try:
        atomic_write_text(path, json.dumps(data, indent=0, sort_keys=True))
    except OSError as e:  # read-only or full disk: hashing still works, just not remembered
        log.debug("cannot write hash cache %s (%s)", path, e)


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes, remembered by real path and :func:`_stat_key`."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read weight file ({e.strerror or e})") from e
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file")
    key = _stat_key(st)
    hit = _memo.get(real)
    if hit is not None and hit[0] == key:
        return hit[1]
    entry = _read_cache(cache_dir() / HASH_CACHE_FILE).get(real)
    if isinstance(entry, dict) and tuple(entry.get(k) for k in _KEY_FIELDS) == key \
            and isinstance(entry.get("sha256"), str):
        _memo[real] = (key, entry["sha256"])
        return entry["sha256"]
    h = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if _stat_key(os.stat(real)) != key:  # changed while we read it: do not remember a torn hash
        return digest
    if time.time() - max(st.st_mtime, st.st_ctime) >= RACY_SECONDS:
        _memo[real] = (key, digest)
        _remember(real, key, digest)
    return digest


# ---- checkpoint files ----------------------------------------------------------------------------
def weight_files(directory: str | Path) -> list[Path]:
    """The files a checkpoint directory's weights are read from (one file, or the shards of an index)."""
    d = Path(directory)
    for single, index in zip(_SINGLE, _INDEX):
        if (d / single).is_file():
            return [d / single]
        if (d / index).is_file():
            try:
                weight_map = json.loads((d / index).read_text(encoding="utf-8"))["weight_map"]
                shards = sorted({str(v) for v in weight_map.values()})
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"{d / index}: unreadable weight index ({e})") from e
            missing = [s for s in shards if not (d / s).is_file()]
            if missing or not shards:
                raise FileNotFoundError(f"{d / index}: shard(s) missing: {', '.join(missing) or 'none listed'}")
            return [d / s for s in shards]
    raise FileNotFoundError(f"{d}: no model weights ({', '.join(_SINGLE + _INDEX)})")


def weights_hash(directory: str | Path) -> str:
    """16 hex digits over (file name, sha256 of bytes) of every weight file: moves and copies keep it."""
    h = hashlib.sha256()
    for f in weight_files(directory):
        h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()[:16]


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path} is missing") from e
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable {what} ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: unreadable {what} (not a JSON object)")
    return data


def read_config(directory: str | Path) -> dict:
    """``config.json`` of a Hugging Face layout directory as a plain dict."""
    return read_json(Path(directory) / "config.json", "model config")


def stable_config(raw: dict) -> dict:
    """A config dict without path/version/runtime fields (for fingerprints)."""
    return {k: v for k, v in raw.items() if k not in VOLATILE_CONFIG_KEYS}


def default_name(source: str) -> str:
    """An upstream's name when the registry has none for it: the folder name or the hub id with '_'."""
    return Path(source).name if Path(source).is_dir() else str(source).replace("/", "_")


def fingerprint_of(name: str, identity: dict) -> str:
    """``<name>-<16 hex>`` over the identity dict and the code version (see module doc)."""
    from emoboost import __version__

    blob = json.dumps({"cfg": identity, "code": __version__}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


# ---- Hugging Face hub --------------------------------------------------------------------------
_HUB_COMMON = ["config.json", "preprocessor_config.json"]
_HUB_WEIGHTS = (["*.safetensors", "*.safetensors.index.json"], ["pytorch_model*.bin", "pytorch_model.bin.index.json"])


@functools.cache
def hub_snapshot(repo_id: str) -> Path:
    """Local snapshot folder of a hub model: config + one weight format (safetensors preferred).

    Downloads what is missing; when the hub cannot be reached (offline, HF_HUB_OFFLINE=1) the copy in
    the local Hugging Face cache is used. Remembered per process, so building after fingerprinting
    asks the hub once.
    """
    from huggingface_hub import snapshot_download

    try:
        for patterns in _HUB_WEIGHTS:
            d = Path(snapshot_download(repo_id, allow_patterns=_HUB_COMMON + patterns))
            try:
                weight_files(d)
                return d
            except FileNotFoundError:
                continue
    except Exception as e:  # no network, offline mode, hub error: fall back to the local cache
        try:
            d = Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:
            raise OSError(f"upstream {repo_id!r}: not in the local Hugging Face cache and the hub "
                          f"could not be reached ({type(e).__name__}: {e})") from e
        weight_files(d)
        return d
    raise FileNotFoundError(f"upstream {repo_id!r}: the hub repository has no weights "
                            "(*.safetensors or pytorch_model*.bin)")


def local_dir(source: str | Path) -> Path:
    """A directory as is; a hub id as its local snapshot."""
    p = Path(source)
    return p if p.is_dir() else hub_snapshot(str(source))


# ---- identities per upstream kind --------------------------------------------------------------
def whisper_identity(directory: str | Path, name: str) -> dict:
    raw = read_config(directory)
    return {
        "name": name,
        "model_type": "whisper-encoder",
        "config": stable_config(raw),
        "weights": weights_hash(directory),
        "mel": {"n_mels": int(raw.get("num_mel_bins", 80)), "hop": WHISPER_HOP, "n_fft": WHISPER_N_FFT,
                "pad_to_30s": False},
    }


def resolve_normalize(directory: str | Path, raw: dict, normalize: bool | None) -> bool:
    """wav2vec2-family input standardisation: explicit choice, else the checkpoint's
    ``preprocessor_config.json`` ``do_normalize``, else ``feat_extract_norm == "layer"`` (fairseq)."""
    if normalize is not None:
        return bool(normalize)
    pre = Path(directory) / "preprocessor_config.json"
    if pre.is_file():
        value = read_json(pre, "preprocessor config").get("do_normalize")
        if value is not None:
            return bool(value)
    return raw.get("feat_extract_norm", "group") == "layer"


def hf_identity(directory: str | Path, name: str, normalize: bool | None = None) -> dict:
    raw = read_config(directory)
    return {
        "name": name,
        "model_type": raw.get("model_type"),
        "config": stable_config(raw),
        "weights": weights_hash(directory),
        "normalize": resolve_normalize(directory, raw, normalize),
        "attention_mask": raw.get("feat_extract_norm", "group") == "layer",
    }


def read_own_meta(directory: str | Path) -> dict:
    """``emoboost_upstream.json`` of an emoboost-pretrained directory, checked."""
    d = Path(directory)
    meta_path = d / OWN_UPSTREAM_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} is missing: {d} is not an emoboost pretrained upstream")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != OWN_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{meta_path}: unknown format {got!r} (expected {OWN_FORMAT!r})")
    if not (d / OWN_WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"{d / OWN_WEIGHTS_FILE} is missing (pretraining unfinished?)")
    return meta


def own_name(directory: str | Path, meta: dict) -> str:
    return f"{meta['model_type']}-{Path(directory).resolve().name}"


def own_identity(directory: str | Path, meta: dict | None = None) -> dict:
    meta = read_own_meta(directory) if meta is None else meta
    return {"name": own_name(directory, meta), "model_type": meta["model_type"],
            "model_config": meta.get("model_config"), "feature": meta.get("feature"),
            "weights": weights_hash(directory)}
