"""`emoboost pretrain` / `emoboost intensity` argument helpers, end to end on tiny inputs."""

import argparse
import json

import numpy as np
import soundfile as sf

from emoboost.cli.pretrain import add_intensity_args, add_pretrain_args, run_intensity, run_pretrain
from emoboost.pretrain.intensity import IntensityConfig, IntensityModel


def _wav(path, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.2 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + 0.001 * rng.standard_normal(len(t))
    sf.write(str(path), x.astype(np.float32), 16000)
    return path


def test_pretrain_cli(tmp_path, capsys):
    for i in range(2):
        _wav(tmp_path / f"a{i}.wav", 1.0 + i * 0.5, i)
    p = argparse.ArgumentParser()
    add_pretrain_args(p)
    args = p.parse_args(["--model", "npc", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--steps", "2",
                         "--quiet", "--set", "model_config={hidden_size: 8, num_blocks: 1, kernel_size: 5, mask_size: 1}",
                         "batch_size=2", "crop_seconds=0.5", "feature.n_mels=16"])
    assert run_pretrain(args) == 0
    meta = json.loads((tmp_path / "out" / "emoboost_upstream.json").read_text())
    assert meta["model_type"] == "npc" and meta["model_config"]["hidden_size"] == 8
    assert "--upstream" in capsys.readouterr().out


def test_intensity_cli_prints_and_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EMOBOOST_INTENSITY_MODEL", raising=False)
    rng = np.random.default_rng(0)
    IntensityModel(IntensityConfig(), [f"f{i}" for i in range(51)], rng.standard_normal(51), np.zeros(51),
                   np.full(51, 100.0)).save(tmp_path / "m")
    wav = _wav(tmp_path / "x.wav", 1.5)
    p = argparse.ArgumentParser()
    add_intensity_args(p)
    assert run_intensity(p.parse_args([str(wav), "--model", str(tmp_path / "m"), "--plot", str(tmp_path / "c.png")])) == 0
    out = capsys.readouterr().out
    assert "x.wav: mean" in out and (tmp_path / "c.png").stat().st_size > 1000
    assert run_intensity(p.parse_args([str(wav), "--model", str(tmp_path / "m"), "--csv"])) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r and r[0].isdigit()]
    vals = np.array([float(r.split(",")[1]) for r in rows])
    assert len(rows) > 50 and vals.min() >= 0 and vals.max() <= 1
    assert run_intensity(p.parse_args([str(wav)])) == 2  # no model: clear message, non-zero exit
    assert "no intensity model" in capsys.readouterr().err
