"""The CPU-thread default of the command line (``emoboost --threads``, the ``threads:`` config key)."""

import json
import os
import subprocess
import sys

import pytest

from emoboost.cli import threads as cli

# Each case runs in a fresh interpreter: thread settings are process-wide, and whether torch gets
# imported at all is part of what is checked.
_PROBE = """
import json, os, sys
cores = int(sys.argv[1])
os.sched_getaffinity = lambda pid: set(range(cores))  # pretend this machine has `cores` cores
from emoboost.cli import main
rc = main(json.loads(sys.argv[2]))
out = {"rc": rc, "omp": os.environ.get("OMP_NUM_THREADS"), "blas": os.environ.get("OPENBLAS_NUM_THREADS"),
       "torch_loaded": "torch" in sys.modules}
if sys.argv[3] == "1":
    import torch  # already loaded, or loading now under the environment main() left
    out["torch_threads"] = torch.get_num_threads()
print(json.dumps(out))
"""


def _probe(cores: int, argv: list[str], env: dict | None = None, torch: bool = False) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in cli._THREAD_ENV}
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", _PROBE, str(cores), json.dumps(argv), str(int(torch))], capture_output=True,
                       text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_default_is_one_thread_on_small_machines_only(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cli.default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cli.default_threads() is None


def test_small_machine_default_reaches_the_environment_without_importing_torch():
    r = _probe(2, ["data", "list"], torch=True)
    assert r["rc"] == 0 and r["omp"] == "1" and r["blas"] == "1" and r["torch_threads"] == 1
    assert not r["torch_loaded"]  # data list stays fast: the setting waits in the environment
    big = _probe(8, ["data", "list"])
    assert big["omp"] is None and big["blas"] is None  # larger machines keep the libraries' choice


def test_flag_and_environment_win_over_the_default():
    r = _probe(4, ["--threads", "3", "data", "list"])
    assert r["omp"] == "3" and r["blas"] == "3"
    r = _probe(2, ["--threads", "2", "data", "list"])
    assert r["omp"] == "2" and r["blas"] == "2"  # the default would be 1
    r = _probe(2, ["data", "list"], env={"OMP_NUM_THREADS": "2"})
    assert r["omp"] == "2" and r["blas"] is None  # the user's own setting is left alone


def test_config_key_beats_the_default(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("threads: 2\ncorpus: no-such-corpus\n")
    r = _probe(2, ["run", str(cfg), "--out", str(tmp_path / "run")], torch=True)
    assert r["rc"] == 2  # the unknown corpus is reported after the threads were set
    assert r["torch_threads"] == 2 and r["omp"] == "2"  # the default alone would have given 1


def test_more_threads_than_cores_are_clamped_and_fewer_than_one_refused(capsys):
    """``--threads 99999`` (or the config key) runs with the usable cores and says so in one line; an
    onnxruntime session asked for more threads than cores gets the cores (it grew memory per thread)."""
    r = subprocess.run([sys.executable, "-c", _PROBE, "2", json.dumps(["--threads", "99999", "data", "list"]), "1"],
                       capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                            if k not in cli._THREAD_ENV}, timeout=120)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and out["omp"] == "2" and out["torch_threads"] == 2
    assert r.stderr.strip() == "WARNING emoboost: --threads 99999 is more than the 2 usable CPU core(s) here; using 2"
    from emoboost.cli import main

    for bad in ("0", "-4"):
        assert main(["--threads", bad, "data", "list"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"emoboost: error: --threads must be at least 1, got {bad}"


def test_onnxruntime_threads_are_bounded(monkeypatch):
    from emoboost import utils

    monkeypatch.setattr(utils, "usable_cores", lambda: 2)
    assert utils.bound_threads(99999, "threads") == 2 and utils.bound_threads(1) == 1
    for bad in (0, 1.5, "4", True):
        with pytest.raises(ValueError, match="threads"):
            utils.bound_threads(bad, "threads")
