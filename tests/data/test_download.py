"""download_corpus against a local HTTP server (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from conftest import write_tone
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
