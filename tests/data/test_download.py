"""download_corpus against a local HTTP server (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from builders import write_tone
from emoboost.data import download as dl
from emoboost.data.corpora import emodb, iemocap, ravdess
from emoboost.data.download import DownloadError, download_corpus, extract_zip

EMODB_FILES = ["03a01Fa", "08b02Wb", "16a05Tc"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on an ephemeral 127.0.0.1 port; yields (www folder, base URL, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("H", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def make_emodb_zip(path: Path, src: Path) -> Path:
    """An archive with EmoDB's release layout: wav/, lablaut/, erkennung.txt at the top level."""
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(EMODB_FILES):
            wav = write_tone(src / f"{name}.wav", seconds=0.2 + 0.05 * i, seed=i)
            zf.write(wav, f"wav/{name}.wav")
            zf.writestr(f"lablaut/{name}.lab", "0 sil\n")
        zf.writestr("erkennung.txt", "Nr.\tSatz\terkannt\n")
    return path


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith(".") or p.suffix in (".zip", ".part"))


def test_download_extract_prepare(tmp_path, server):
    www, base, requests = server
    make_emodb_zip(www / "download.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    root = download_corpus("emodb", dest, url=f"{base}/download.zip")
    assert root == dest / "emodb"
    assert (root / "wav" / "03a01Fa.wav").is_file() and (root / "erkennung.txt").is_file()
    assert leftovers(dest) == []                       # no archive, no temp file, no staging folder
    m = emodb.prepare(root)
    assert m.ids == EMODB_FILES
    assert [u.label for u in m] == ["happiness", "anger", "sadness"]
    assert [u.duration for u in m] == pytest.approx([0.2, 0.25, 0.3])
    assert requests == ["/download.zip"]


def test_idempotent_and_force(tmp_path, server):
    www, base, requests = server
    make_emodb_zip(www / "download.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    root = emodb.download(dest, url=f"{base}/download.zip")
    (root / "wav" / "03a01Fa.wav").unlink()             # a change a re-download would undo
    assert emodb.download(dest, url=f"{base}/download.zip") == root
    assert len(requests) == 1 and not (root / "wav" / "03a01Fa.wav").exists()
    assert download_corpus("emodb", dest, url=f"{base}/download.zip", force=True) == root
    assert len(requests) == 2 and (root / "wav" / "03a01Fa.wav").is_file()


def test_not_a_zip_leaves_nothing(tmp_path, server):
    www, base, _ = server
    (www / "page.html").write_text("<html>please log in</html>")
    dest = tmp_path / "corpora"
    with pytest.raises(DownloadError, match=r"page.html: the downloaded file is not a zip archive"):
        download_corpus("emodb", dest, url=f"{base}/page.html", progress=False)
    assert list(dest.iterdir()) == []


def test_http_error_and_failed_force_keeps_old_copy(tmp_path, server):
    www, base, _ = server
    make_emodb_zip(www / "download.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    root = download_corpus("emodb", dest, url=f"{base}/download.zip", progress=False)
    with pytest.raises(DownloadError, match=r"missing.zip: HTTP 404"):
        download_corpus("emodb", dest, url=f"{base}/missing.zip", force=True, progress=False)
    assert len(emodb.prepare(root)) == 3 and leftovers(dest) == []


def test_unreachable_url(tmp_path):
    with pytest.raises(DownloadError, match="download failed"):
        download_corpus("emodb", tmp_path, url="http://127.0.0.1:9/none.zip", progress=False, timeout=5)


def test_single_wrapper_folder_is_descended(tmp_path, server):
    www, base, _ = server
    with zipfile.ZipFile(www / "r.zip", "w") as zf:
        wav = write_tone(tmp_path / "src" / "a.wav", seconds=0.2)
        zf.write(wav, "Audio_Speech/Actor_01/03-01-05-02-01-02-01.wav")
        zf.writestr("__MACOSX/._junk", "x")
    root = ravdess.download(tmp_path / "c", url=f"{base}/r.zip")
    assert root == tmp_path / "c" / "ravdess" / "Audio_Speech"
    assert ravdess.prepare(root).ids == ["03-01-05-02-01-02-01"]


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "wav/../../evil.txt", "C:/evil.txt"])
def test_extract_refuses_path_traversal(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wav/ok.txt", "fine")
        zf.writestr(member, "owned")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DownloadError, match="unsafe member path"):
        extract_zip(archive, dest)
    assert list(dest.iterdir()) == []                      # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_extract_refuses_symlinks(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("wav/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")


def test_download_via_served_traversal_zip_leaves_nothing(tmp_path, server):
    www, base, _ = server
    with zipfile.ZipFile(www / "evil.zip", "w") as zf:
        zf.writestr("../../escaped.txt", "owned")
    dest = tmp_path / "corpora"
    with pytest.raises(DownloadError, match="unsafe"):
        download_corpus("emodb", dest, url=f"{base}/evil.zip", progress=False)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_corpora_without_public_download_explain_where_to_get_them(tmp_path):
    with pytest.raises(DownloadError, match=r"sail\.usc\.edu"):
        iemocap.download(tmp_path)
    for name in ("cremad", "tess", "emovo", "shemo", "CREMA-D"):
        with pytest.raises(DownloadError, match="no public direct download"):
            download_corpus(name, tmp_path)
    with pytest.raises(DownloadError, match="unknown corpus"):
        download_corpus("mystery", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_official_sources_are_https_or_documented():
    assert dl.SOURCES["emodb"] == "http://emodb.bilderbar.info/download/download.zip"
    assert dl.SOURCES["ravdess"].startswith("https://zenodo.org/")
    assert not set(dl.SOURCES) & set(dl.NO_DIRECT_DOWNLOAD)


# ---- corpus names, replacement, archive limits (nothing outside dest/<corpus> is ever removed) -----------

def _siblings(dest: Path) -> dict[str, bytes]:
    """Other corpora and files beside the corpus folder, which every download must leave alone."""
    (dest / "ravdess" / "Actor_01").mkdir(parents=True)
    (dest / "ravdess" / "Actor_01" / "a.wav").write_bytes(b"keep me")
    (dest / "notes.txt").write_text("mine")
    return _snapshot(dest)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", [".", "..", "", "a/b", "../x", "/tmp/x", "emo db", "émodb"])
def test_unsafe_corpus_names_remove_nothing(tmp_path, server, name):
    www, base, requests = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    dest = tmp_path / "store" / "corpora"
    dest.mkdir(parents=True)
    before = _siblings(dest)
    (tmp_path / "store" / "parent-file.txt").write_text("parent")
    with pytest.raises(DownloadError, match="invalid corpus name"):
        download_corpus(name, dest, url=f"{base}/x.zip", force=True, progress=False)
    assert _snapshot(dest) == before and (tmp_path / "store" / "parent-file.txt").read_text() == "parent"
    assert requests == []                                   # refused before fetching anything


def test_cli_download_dot_is_refused_and_dest_survives(tmp_path, server, capsys):
    from emoboost.cli import main

    www, base, _ = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    dest.mkdir()
    before = _siblings(dest)
    for name in (".", "..", ""):
        assert main(["data", "download", name, "--url", f"{base}/x.zip", "--dest", str(dest), "--force"]) == 2
        assert "invalid corpus name" in capsys.readouterr().err
    assert _snapshot(dest) == before
    assert main(["data", "download", "mycorpus", "--url", f"{base}/x.zip", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.strip() == str(dest / "mycorpus")
    assert (dest / "mycorpus" / "wav" / "03a01Fa.wav").is_file()
    assert {k: v for k, v in _snapshot(dest).items() if not k.startswith("mycorpus/")} == before


def test_force_replaces_only_the_corpus_folder(tmp_path, server):
    www, base, _ = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    dest.mkdir()
    before = _siblings(dest)
    root = download_corpus("emodb", dest, url=f"{base}/x.zip", progress=False)
    (root / "stale.txt").write_text("from the old copy")
    assert download_corpus("emodb", dest, url=f"{base}/x.zip", force=True, progress=False) == root
    assert not (root / "stale.txt").exists() and (root / "wav" / "03a01Fa.wav").is_file()
    assert {k: v for k, v in _snapshot(dest).items() if not k.startswith("emodb/")} == before
    assert leftovers(dest) == []                            # the renamed-aside old copy is gone too


def test_failed_move_puts_the_old_copy_back(tmp_path, server, monkeypatch):
    www, base, _ = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    root = download_corpus("emodb", dest, url=f"{base}/x.zip", progress=False)
    old = _snapshot(root)
    real_rename = dl.os.rename

    def rename(src, dst):
        if ".extracting-" in str(src):                       # moving the new copy in fails
            raise OSError(28, "No space left on device", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(dl.os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        download_corpus("emodb", dest, url=f"{base}/x.zip", force=True, progress=False)
    assert _snapshot(root) == old and leftovers(dest) == []


def test_foreign_folder_is_not_replaced_without_force(tmp_path, server):
    www, base, requests = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    dest = tmp_path / "corpora"
    (dest / "emodb" / "wav").mkdir(parents=True)
    (dest / "emodb" / "wav" / "mine.wav").write_bytes(b"hand-copied")
    with pytest.raises(DownloadError, match=r"exists but was not written by a completed download.*--force"):
        download_corpus("emodb", dest, url=f"{base}/x.zip", progress=False)
    assert (dest / "emodb" / "wav" / "mine.wav").read_bytes() == b"hand-copied" and requests == []


def test_symlinked_corpus_folder_loses_the_link_only(tmp_path, server):
    www, base, _ = server
    make_emodb_zip(www / "x.zip", tmp_path / "src")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "wav").mkdir(parents=True)
    (elsewhere / "wav" / "precious.wav").write_bytes(b"precious")
    dest = tmp_path / "corpora"
    dest.mkdir()
    (dest / "emodb").symlink_to(elsewhere, target_is_directory=True)
    root = download_corpus("emodb", dest, url=f"{base}/x.zip", force=True, progress=False)
    assert not root.is_symlink() and (root / "wav" / "03a01Fa.wav").is_file()
    assert (elsewhere / "wav" / "precious.wav").read_bytes() == b"precious"


def _bomb(path: Path, megabytes: int = 20) -> Path:
    """A few KB of deflated zeros that expand to ``megabytes`` MB."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("wav/zeros.wav", bytes(megabytes << 20))
    return path


def test_decompression_bomb_is_refused_before_writing(tmp_path, server):
    www, base, _ = server
    bomb = _bomb(www / "bomb.zip")
    assert bomb.stat().st_size < 100_000
    dest = tmp_path / "corpora"
    dest.mkdir()
    before = _siblings(dest)
    with pytest.raises(DownloadError, match=r"bomb.zip: 20\.. KB expands to 21\.0 MB \(ratio \d+:1 > 100:1\)"):
        download_corpus("emodb", dest, url=f"{base}/bomb.zip", progress=False)
    assert _snapshot(dest) == before and leftovers(dest) == []
    # configurable: a trusted archive passes with a higher ratio limit
    download_corpus("emodb", dest, url=f"{base}/bomb.zip", progress=False, max_ratio=1e6)
    assert (dest / "emodb" / "wav" / "zeros.wav").stat().st_size == 20 << 20


def test_total_size_limit_and_member_ratio(tmp_path):
    archive = tmp_path / "a.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("noise.bin", rng.integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())  # incompressible
        zf.writestr("zeros.bin", bytes(2 << 20))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError, match=r"expands to 5\.2 MB, over the limit of 4\.2 MB"):
        extract_zip(archive, out, max_bytes=4 << 20)
    # the whole archive's ratio is ~1.7:1, but one member is a bomb on its own
    with pytest.raises(DownloadError, match=r"member 'zeros.bin' expands .* > 50:1"):
        extract_zip(archive, out, max_ratio=50)
    assert list(out.iterdir()) == []
    extract_zip(archive, out, max_ratio=1e4)
    assert (out / "zeros.bin").stat().st_size == 2 << 20 and (out / "noise.bin").stat().st_size == 3 << 20


def test_archive_larger_than_free_space(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wav/a.wav", bytes(5000))
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: dl.shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(DownloadError, match=r"needs 5\.0 KB but only 1\.0 KB are free"):
        extract_zip(archive, tmp_path / "out")
