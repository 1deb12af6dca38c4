"""Fetch a corpus archive from its official public URL and unpack it where ``prepare`` expects it.

Only corpora with a direct public download are listed in :data:`SOURCES`; the others need a licence
form or an account, and :func:`download_corpus` says where to request them. Everything is written
through temporary names and renamed at the end, so an interrupted run never leaves a half corpus
that a later run would mistake for a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

SOURCES: dict[str, str] = {
    "emodb": "http://emodb.bilderbar.info/download/download.zip",
    "ravdess": "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
}
"""Direct public archive URLs (zip)."""

NO_DIRECT_DOWNLOAD: dict[str, str] = {
    "iemocap": "IEMOCAP is released only after signing the licence form at https://sail.usc.edu/iemocap/ "
               "(the release arrives as IEMOCAP_full_release.tar.gz; unpack it and pass its folder to prepare).",
    "cremad": "CREMA-D is distributed through git-lfs: `git lfs clone https://github.com/CheyneyComputerScience/CREMA-D` "
              "and pass the clone (which holds AudioWAV/) to prepare.",
    "tess": "TESS is distributed by the University of Toronto Dataverse "
            "(https://doi.org/10.5683/SP2/E8H2MF); download the files there and pass the folder to prepare.",
    "emovo": "EMOVO is distributed by Fondazione Ugo Bordoni on request "
             "(http://voice.fub.it/activities/corpora/emovo/index.html); pass the unpacked folder to prepare.",
    "shemo": "ShEMO comes as two archives (female.zip, male.zip) linked from https://github.com/pariajm/ShEMO; "
             "unpack both into one folder (giving female/ and male/) and pass it to prepare, or call "
             "download_corpus('shemo', dest, url=...) once per archive.",
}

COMPLETE_MARKER = ".emoboost-download.json"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or archive and the problem."""


def download_corpus(name: str, dest_dir: str | Path, url: str | None = None, force: bool = False,
                    progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``name``'s archive into ``dest_dir/<name>/`` and return the folder ``prepare`` accepts.

    Idempotent: when a previous run completed (marker file present) nothing is fetched unless
    ``force``. ``url`` overrides the official URL (mirrors, tests with a local server); with it, a
    corpus without a public direct download can be fetched from a location the user has access to.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if url is None:
        if key in NO_DIRECT_DOWNLOAD:
            raise DownloadError(f"{name}: no public direct download. {NO_DIRECT_DOWNLOAD[key]}")
        if key not in SOURCES:
            raise DownloadError(f"{name}: unknown corpus for download; known: {', '.join(sorted(SOURCES))} "
                                "(or pass url= pointing to a zip archive)")
        url = SOURCES[key]
    dest_dir = Path(os.path.abspath(Path(dest_dir).expanduser()))
    target = dest_dir / key
    marker = target / COMPLETE_MARKER
    if marker.is_file() and not force:
        return corpus_root(target)
    dest_dir.mkdir(parents=True, exist_ok=True)

    archive = _fetch(url, dest_dir, key, progress=progress, timeout=timeout)
    try:
        staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{key}.extracting-"))
        try:
            extract_zip(archive, staging)
            (staging / COMPLETE_MARKER).write_text(json.dumps({"corpus": key, "url": url}) + "\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        archive.unlink(missing_ok=True)
    return corpus_root(target)


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


def extract_zip(archive: str | Path, dest: str | Path) -> None:
    """Extract every member under ``dest``; refuse absolute paths, ``..``, drive letters and symlinks.

    All names are checked before anything is written, so a malicious archive leaves nothing behind.
    """
    archive, dest = Path(archive), Path(dest).absolute()
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a valid zip archive ({e})") from e
    with zf:
        for info in zf.infolist():
            name = info.filename.replace("\\", "/")
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
                raise DownloadError(f"{archive}: unsafe member path {info.filename!r} (would escape {dest})")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DownloadError(f"{archive}: member {info.filename!r} is a symbolic link; refusing it")
            resolved = (dest / name).resolve()
            if resolved != dest.resolve() and dest.resolve() not in resolved.parents:
                raise DownloadError(f"{archive}: unsafe member path {info.filename!r} (would escape {dest})")
        try:
            zf.extractall(dest)
        except (zipfile.BadZipFile, OSError) as e:
            raise DownloadError(f"{archive}: extraction failed ({e})") from e


def corpus_root(target: Path) -> Path:
    """The folder to give ``prepare``: ``target``, or its lone top-level folder (``X.zip`` -> ``X/``).

    Only one level is descended, so a corpus whose single top folder is real content (one actor)
    is not mistaken for a wrapper. ``__MACOSX`` metadata folders and hidden files do not count.
    """
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target
