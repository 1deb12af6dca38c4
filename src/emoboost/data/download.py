"""Fetch a corpus archive from its official public URL and unpack it where ``prepare`` expects it.

Only corpora with a direct public download are listed in :data:`SOURCES`; the others need a licence
form or an account, and :func:`download_corpus` says where to request them. Everything is written
through temporary names and renamed at the end, so an interrupted run never leaves a half corpus
that a later run would mistake for a complete one.

Safety: the corpus name becomes a folder name under ``dest``, so it must be a plain slug; only that
folder is ever replaced (the old copy is renamed aside, the new one moved in, then the old one
deleted), and archives are checked for unsafe paths, symbolic links and decompression bombs
(total size and compression ratio) before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

log = logging.getLogger(__name__)

SOURCES: dict[str, str] = {
    "emodb": "http://emodb.bilderbar.info/download/download.zip",
    "ravdess": "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
}
"""Direct public archive URLs (zip)."""

NO_DIRECT_DOWNLOAD: dict[str, str] = {
    "iemocap": "IEMOCAP is released only after signing the licence form at https://sail.usc.edu/iemocap/ "
               "(it arrives as IEMOCAP_full_release.tar.gz: unpack it)",
    "cremad": "CREMA-D is distributed through git-lfs: `git lfs clone https://github.com/CheyneyComputerScience/CREMA-D` "
              "(the clone holds AudioWAV/)",
    "tess": "TESS is distributed by the University of Toronto Dataverse "
            "(https://doi.org/10.5683/SP2/E8H2MF): download its files into one folder",
    "emovo": "EMOVO is distributed by Fondazione Ugo Bordoni on request "
             "(http://voice.fub.it/activities/corpora/emovo/index.html): unpack it",
    "shemo": "ShEMO comes as two archives (female.zip, male.zip) linked from https://github.com/pariajm/ShEMO: "
             "unpack both into one folder (giving female/ and male/), or fetch each with "
             "`emoboost data download shemo --url URL`",
}
"""How to obtain each corpus without a public direct download; the caller adds what to do with the folder
(``data download``: give it to ``data prepare``; a run: ``--data-root``)."""

COMPLETE_MARKER = ".emoboost-download.json"
CHUNK = 1 << 16

MAX_EXTRACT_BYTES = 64 << 30
"""Default limit on an archive's total uncompressed size (the largest corpus here is a few GB)."""
MAX_RATIO = 100.0
"""Default limit on uncompressed / compressed size: audio deflates ~1-3x, decompression bombs 1000x+."""
RATIO_MIN_BYTES = 1 << 20
"""Archives and members smaller than this (uncompressed) are never refused for their ratio."""

_SLUG = re.compile(r"[a-z0-9]{1,64}")


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or archive and the problem."""


def corpus_key(name: str) -> str:
    """The folder name for corpus ``name`` (``CREMA-D`` -> ``cremad``); refuses anything but a plain slug.

    The key is joined to the destination folder, so ``.``, ``..``, ``""``, or a name with a path
    separator would make the replacement step act on the destination itself or its parent.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if not _SLUG.fullmatch(key):
        raise DownloadError(f"invalid corpus name {name!r}: use a registered corpus (emoboost data list) "
                            "or, with a URL, a name of 1-64 letters and digits (it becomes the folder name)")
    return key


def download_corpus(name: str, dest_dir: str | Path, url: str | None = None, force: bool = False,
                    progress: bool = True, timeout: float = 60.0, max_bytes: int = MAX_EXTRACT_BYTES,
                    max_ratio: float = MAX_RATIO) -> Path:
    """Download ``name``'s archive into ``dest_dir/<name>/`` and return the folder ``prepare`` accepts.

    Idempotent: when a previous run completed (marker file present) nothing is fetched unless
    ``force``. ``url`` overrides the official URL (mirrors, tests with a local server); with it, a
    corpus without a public direct download can be fetched from a location the user has access to.
    A folder ``dest_dir/<name>`` not written by this function is never replaced without ``force``.
    ``max_bytes`` / ``max_ratio`` bound the archive's uncompressed size (see :func:`extract_zip`).
    """
    key = corpus_key(name)
    if url is None:
        if key in NO_DIRECT_DOWNLOAD:
            raise DownloadError(f"{name}: no public direct download. {NO_DIRECT_DOWNLOAD[key]}; then pass the "
                                "folder to `emoboost data prepare` or to --data-root.")
        if key not in SOURCES:
            raise DownloadError(f"{name}: unknown corpus for download; known: {', '.join(sorted(SOURCES))} "
                                "(or pass url= pointing to a zip archive)")
        url = SOURCES[key]
    dest_dir = Path(os.path.abspath(Path(dest_dir).expanduser()))
    target = dest_dir / key
    marker = target / COMPLETE_MARKER
    if marker.is_file() and not force:
        return corpus_root(target)
    if (target.exists() or target.is_symlink()) and not force:
        raise DownloadError(f"{target} exists but was not written by a completed download (no {COMPLETE_MARKER}); "
                            "use it with --data-root, or pass --force to replace it")
    dest_dir.mkdir(parents=True, exist_ok=True)

    archive = _fetch(url, dest_dir, key, progress=progress, timeout=timeout)
    try:
        staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{key}.extracting-"))
        try:
            extract_zip(archive, staging, max_bytes=max_bytes, max_ratio=max_ratio, source=url)
            (staging / COMPLETE_MARKER).write_text(json.dumps({"corpus": key, "url": url}) + "\n")
            replace_folder(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        archive.unlink(missing_ok=True)
    return corpus_root(target)


def replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is renamed aside first and deleted last.

    At every instant ``target`` is either the complete old copy or the complete new one; if the
    move fails, the old copy is put back. Only ``target`` (and the aside name next to it) is
    touched, and an old ``target`` that is a symbolic link loses the link only, never what it
    points to.
    """
    if new.parent != target.parent:
        raise ValueError(f"replace_folder: {new} and {target} must share a parent folder")
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        try:
            if old.is_symlink():
                old.unlink()
            else:
                shutil.rmtree(old)
        except OSError as e:
            log.warning("replaced %s but could not delete the previous copy %s (%s); delete it by hand",
                        target, old, e.strerror or e)


def _fetch(url: str, dest_dir: Path, key: str, progress: bool, timeout: float) -> Path:
    """Stream ``url`` to a temp file, check it is a zip, rename it to ``dest_dir/<key>.zip``."""
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{key}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = resp.headers.get("Content-Length")
                    with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                              desc=f"download {key}", disable=not progress) as bar:
                        for chunk in iter(lambda: resp.read(CHUNK), b""):
                            out.write(chunk)
                            bar.update(len(chunk))
            except urllib.error.HTTPError as e:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            except (urllib.error.URLError, OSError) as e:
                raise DownloadError(f"{url}: download failed ({e})") from e
        size = tmp.stat().st_size
        if total and size != int(total):
            raise DownloadError(f"{url}: incomplete download ({size} of {total} bytes)")
        if not zipfile.is_zipfile(tmp):
            raise DownloadError(f"{url}: the downloaded file is not a zip archive "
                                f"({size} bytes; an HTML error page?)")
        archive = dest_dir / f"{key}.zip"
        os.replace(tmp, archive)
        return archive
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def extract_zip(archive: str | Path, dest: str | Path, max_bytes: int = MAX_EXTRACT_BYTES,
                max_ratio: float = MAX_RATIO, source: str | None = None) -> None:
    """Extract every member under ``dest``; refuse absolute paths, ``..``, drive letters and symlinks.

    Also refused: archives whose members add up to more than ``max_bytes`` uncompressed, or more
    than the free space under ``dest``, and decompression bombs: a compression ratio above
    ``max_ratio`` for the whole archive or for one member (above :data:`RATIO_MIN_BYTES`). All of
    this is checked before anything is written, so a malicious archive leaves nothing behind; the
    sizes are also enforced while writing, in case a member holds more than its header declares.
    Messages name ``source`` (e.g. the URL the archive came from) instead of the archive's path.
    """
    path, dest = Path(archive), Path(dest).absolute()
    archive = source or path
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a valid zip archive ({e})") from e
    with zf:
        infos = zf.infolist()
        for info in infos:
            name = info.filename.replace("\\", "/")
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
                raise DownloadError(f"{archive}: unsafe member path {info.filename!r} (would escape {dest})")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DownloadError(f"{archive}: member {info.filename!r} is a symbolic link; refusing it")
            resolved = (dest / name).resolve()
            if resolved != dest.resolve() and dest.resolve() not in resolved.parents:
                raise DownloadError(f"{archive}: unsafe member path {info.filename!r} (would escape {dest})")
        _check_sizes(archive, path.stat().st_size, dest, infos, max_bytes, max_ratio)
        try:
            for info in infos:
                _extract_member(zf, info, dest, archive)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DownloadError(f"{archive}: extraction failed ({e})") from e


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _check_sizes(archive: str | Path, packed: int, dest: Path, infos: list[zipfile.ZipInfo], max_bytes: int,
                 max_ratio: float) -> None:
    total = sum(i.file_size for i in infos)
    hint = "(pass a higher max_bytes / max_ratio, or --max-size / --max-ratio, if the archive is trusted)"
    if total > max_bytes:
        raise DownloadError(f"{archive}: expands to {_fmt_bytes(total)}, over the limit of "
                            f"{_fmt_bytes(max_bytes)} {hint}")
    if total > RATIO_MIN_BYTES and total > max_ratio * max(packed, 1):
        raise DownloadError(f"{archive}: {_fmt_bytes(packed)} expands to {_fmt_bytes(total)} "
                            f"(ratio {total / max(packed, 1):.0f}:1 > {max_ratio:g}:1), a decompression bomb? {hint}")
    for i in infos:
        if i.file_size > RATIO_MIN_BYTES and i.file_size > max_ratio * max(i.compress_size, 1):
            raise DownloadError(f"{archive}: member {i.filename!r} expands {_fmt_bytes(i.compress_size)} -> "
                                f"{_fmt_bytes(i.file_size)} (ratio {i.file_size / max(i.compress_size, 1):.0f}:1 > "
                                f"{max_ratio:g}:1), a decompression bomb? {hint}")
    probe = dest if dest.exists() else dest.parent
    free = shutil.disk_usage(probe).free
    if total > free:
        raise DownloadError(f"{archive}: needs {_fmt_bytes(total)} but only {_fmt_bytes(free)} are free under {probe}")


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: str | Path) -> None:
    """Write one (already checked) member, never more bytes than its header declares."""
    target = dest / info.filename.replace("\\", "/")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(target, "wb") as out:
        for chunk in iter(lambda: src.read(CHUNK), b""):
            written += len(chunk)
            if written > info.file_size:
                raise DownloadError(f"{archive}: member {info.filename!r} holds more than the "
                                    f"{info.file_size} bytes its header declares; refusing it")
            out.write(chunk)


def corpus_root(target: Path) -> Path:
    """The folder to give ``prepare``: ``target``, or its lone top-level folder (``X.zip`` -> ``X/``).

    Only one level is descended, so a corpus whose single top folder is real content (one actor)
    is not mistaken for a wrapper. ``__MACOSX`` metadata folders and hidden files do not count.
    """
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target
