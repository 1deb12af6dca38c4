"""Output folders: ownership markers, one writer at a time, stale temp files, the code version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emoboost import outdir
from emoboost.outdir import OutDirBusy, OutDirError, check_owner, claim_dir, source_digest

HOLD = """
import sys, time
from emoboost.outdir import claim_dir
with claim_dir(sys.argv[1], "export"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_new_folder_gets_its_marker_first_and_may_be_claimed_again(tmp_path):
    out = tmp_path / "a" / "b"
    with claim_dir(out, "export"):
        assert [p.name for p in out.iterdir()] == [".emoboost-export"]
        (out / "head.onnx").write_bytes(b"x")
        with claim_dir(out, "export"):  # re-entrant within one process
            pass
    with claim_dir(out, "export"):  # the same command kind, later: allowed
        pass
    assert (out / "head.onnx").exists()


def test_foreign_and_other_kind_folders_are_refused_untouched(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "encoder.onnx").write_bytes(b"mine")
    with pytest.raises(OutDirError, match=f"^{user}: not empty and not written by `emoboost export`"):
        with claim_dir(user, "export"):
            pytest.fail("claimed a foreign folder")
    assert [p.name for p in user.iterdir()] == ["encoder.onnx"]
    run = tmp_path / "run"
    with claim_dir(run, "run"):
        pass
    with pytest.raises(OutDirError, match=f"^{run}: holds a run directory .*, not a final model"):
        check_owner(run, "model")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutDirError, match="exists and is not a folder"):
        check_owner(f, "run")


def test_a_failed_claim_of_a_new_folder_leaves_nothing(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="export failed"):
        with claim_dir(out, "export"):
            raise RuntimeError("export failed")
    assert not out.exists()


def test_a_second_process_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
    out = tmp_path / "x"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutDirBusy, match=rf"^{out}: another emoboost process \(pid {proc.pid}\) is writing this "
                                             r"ONNX export; wait for it"):
            with claim_dir(out, "export"):
                pytest.fail("two writers")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    t0 = time.monotonic()
    with claim_dir(out, "export"):  # at once: the lock died with its process
        assert time.monotonic() - t0 < 5


def test_stale_temp_files_go_only_in_owned_folders(tmp_path):
    out = tmp_path / "m"
    with claim_dir(out, "model"):
        pass
    stale = [out / ".bundle.json.a1b2c3d4.tmp", out / ".model.safetensors.tmp"]
    kept = [out / "model.safetensors", out / "x.tmp", out / ".cache", out / "cv" / ".fold.json.a1b2c3d4.tmp"]
    for p in stale + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    with claim_dir(out, "model"):  # the top level only: cv/ is another command's folder
        pass
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)


def test_code_version_changes_when_a_source_file_changes(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "methods").mkdir(parents=True)
    (pkg / "methods" / "logreg.py").write_text('DEFAULTS = {"max_iter": 2000}\n')
    (pkg / "notes.txt").write_text("not code")
    a = source_digest(pkg)
    (pkg / "notes.txt").write_text("still not code")
    assert source_digest(pkg) == a
    (pkg / "methods" / "logreg.py").write_text('DEFAULTS = {"max_iter": 1000}\n')  # an edited default
    assert source_digest(pkg) != a
    assert source_digest(tmp_path / "empty") is None
    import emoboost

    v = outdir.code_version()
    assert v.startswith(emoboost.__version__ + "+src.") and v == outdir.code_version()
    assert v.endswith(source_digest(Path(emoboost.__file__).parent)[:12])
