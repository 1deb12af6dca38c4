import json

import pytest

from emoboost.cli import build_parser, main
from emoboost.cli.run import _experiment_dict, apply_overrides
from emoboost.experiment.run import ExperimentConfig


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides({"method_params": {}}, ["method_params.lr=1e-4", "seeds=[0, 1]", "method_params.attention=false"])
    assert cfg == {"method_params": {"lr": 1e-4, "attention": False}, "seeds": [0, 1]}
    with pytest.raises(SystemExit):
        apply_overrides({}, ["nokey"])


def test_yaml_recipe_plus_flags(tmp_path):
    args = build_parser().parse_args(["run", "recipes/emodb/msemoboost.yaml", "-p", "layer=2", "-o", "seeds=[3]", "--quick"])
    d = _experiment_dict(args)
    cfg = ExperimentConfig.from_dict(d)
    assert cfg.method == "msemoboost" and cfg.method_params["layer"] == 2 and cfg.method_params["guidance"] == "both"
    assert cfg.seeds == [3] and cfg.max_folds == 2


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown config key"):
        ExperimentConfig.from_dict({"corpsu": "emodb"})


def test_data_list_and_unknown_corpus(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "emodb" in out and "iemocap" in out
    assert main(["data", "prepare", "nosuchcorpus", "/tmp", "--out", "/tmp/x.jsonl"]) == 2
    assert "unknown corpus" in capsys.readouterr().err


# ---- fast start: building the parser and listing corpora import no heavy libraries -------------------------

HEAVY = ("torch", "transformers", "sklearn")


def _imported_after(code: str) -> set[str]:
    import subprocess
    import sys

    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.strip().splitlines()[-1].split())


@pytest.mark.parametrize("code", [
    "from emoboost.cli import build_parser; build_parser()",
    "from emoboost.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from emoboost.cli import main\ntry:\n    main(['benchmark', '--help'])\nexcept SystemExit:\n    pass",
    "from emoboost.cli import main; main(['data', 'list'])",
    "from emoboost.cli import main; main(['upstreams'])",
])
def test_help_and_data_list_import_no_torch_transformers_sklearn(code):
    mods = _imported_after(code)
    assert "emoboost" in mods
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_lazy_commands_register_their_arguments_when_chosen():
    from emoboost.cli import benchmark

    args = build_parser().parse_args(["benchmark", "--corpus", "ravdess", "--methods", "linear"])
    assert args.func is benchmark.main and args.corpus == "ravdess" and args.methods == ["linear"]
    args = build_parser().parse_args(["intensity", "x.wav", "--model", "m"])
    assert args.func.__name__ == "run_intensity"


# ---- folder-per-label corpora from the command line --------------------------------------------------------

def _folder_corpus(root):
    from builders import write_tone

    for label, freq in (("anger", 300.0), ("joy", 500.0)):
        for spk in ("spk1", "spk2", "spk3"):
            write_tone(root / label / f"{spk}_{label}_01.wav", seconds=0.2, freq=freq)
    return root


def test_data_prepare_folder_with_speaker_regex(tmp_path, capsys):
    from emoboost.data.manifest import Manifest

    root = _folder_corpus(tmp_path / "mine")
    out = tmp_path / "m.jsonl"
    assert main(["data", "prepare", "folder", str(root), "--speaker-regex", r"^(spk\d+)_", "--out", str(out)]) == 0
    m = Manifest.read(out)
    assert len(m) == 6 and sorted(set(m.groups("speaker"))) == ["spk1", "spk2", "spk3"]
    assert sorted(set(m.labels())) == ["anger", "joy"]
    capsys.readouterr()
    assert main(["data", "prepare", "folder", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no speaker source given" in err and err.count("\n") == 1
    assert main(["data", "prepare", "folder", str(root), "--option", "speeker=file", "--out", str(out)]) == 2
    assert "unknown option(s) ['speeker']; it accepts: speaker_regex, speaker_level, speaker" in capsys.readouterr().err
    assert main(["data", "prepare", "folder", str(root), "--option", "speaker=file", "--out", str(out)]) == 0
    assert len(set(Manifest.read(out).groups("speaker"))) == 6


def test_corpus_options_reach_the_run_config():
    args = build_parser().parse_args(["run", "--corpus", "folder", "--data-root", "/d",
                                      "--corpus-option", r"speaker_regex=^(spk\d+)_",
                                      "-o", "corpus_options.speaker_level=1", "--min-class-count", "3"])
    d = _experiment_dict(args)
    assert d["corpus_options"] == {"speaker_regex": r"^(spk\d+)_", "speaker_level": 1}
    assert d["min_class_count"] == 3


def test_quick_caps_epochs_only_for_methods_that_have_them():
    d = _experiment_dict(build_parser().parse_args(["run", "--method", "svm", "--quick"]))
    assert "max_epochs" not in d["method_params"] and d["max_folds"] == 2
    d = _experiment_dict(build_parser().parse_args(["run", "--method", "ssl_cnn", "--quick"]))
    assert d["method_params"]["max_epochs"] == 3


def test_tsne_is_opt_in():
    from emoboost.experiment.run import ExperimentConfig

    assert ExperimentConfig().tsne is False
    assert "tsne" not in _experiment_dict(build_parser().parse_args(["run", "--method", "svm"]))
    assert _experiment_dict(build_parser().parse_args(["run", "--method", "svm", "--tsne"]))["tsne"] is True
    assert _experiment_dict(build_parser().parse_args(["run", "--method", "svm", "--tsne", "--quick"]))["tsne"] is False


# ---- every error is one line on stderr and a non-zero exit --------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("emoboost: "), err
    assert "Traceback" not in err
    return lines[0]


def _emodb(root):
    from builders import write_tone

    for k, (spk, emo) in enumerate([(s, e) for s in ("03", "08", "09") for e in ("W", "F", "T")]):
        write_tone(root / "wav" / f"{spk}a0{k % 2 + 1}{emo}a.wav", seconds=0.2, seed=k)
    return root


def test_unknown_method_parameter_from_the_command_line(tmp_path, capsys):
    corpus = _emodb(tmp_path / "emodb")
    rc = main(["run", "--corpus", "emodb", "--data-root", str(corpus), "--method", "svm", "-p", "C_gird=[1]",
               "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "svm: unknown parameter(s) 'C_gird' (did you mean 'C_grid'?); valid: C_grid," in line


@pytest.mark.parametrize("method,param,says", [
    ("logreg", "speaker_norm=bogus", "logreg: speaker_norm must be one of 'none', 'speaker', got 'bogus'"),
    ("linear", "pooling=bogus", "linear: pooling must be one of 'utterance', 'segment', got 'bogus'"),
    ("linear", "lr=inf", "linear: lr must be a finite number >= 0, got inf"),
    ("ssl_cnn", "batch_size=0", "ssl_cnn: batch_size must be an integer >= 1, got 0"),
    ("msemoboost", "layer=2,3", "msemoboost: layer must be a layer index (-1 = the last) or 'weighted', got '2,3'"),
])
def test_a_bad_parameter_value_is_one_line_before_any_work(tmp_path, capsys, method, param, says):
    """The method is built before the corpus is read: a corpus folder that does not exist is never looked at."""
    rc = main(["run", "--corpus", "emodb", "--data-root", str(tmp_path / "nowhere"), "--method", method, "-p", param,
               "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert rc == 2
    assert says in _one_error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_bad_yaml_config_names_the_file(tmp_path, capsys):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("method: linear\n  corpus: [emodb\n")
    assert main(["run", str(bad)]) == 2
    assert f"{bad}: invalid YAML" in _one_error_line(capsys)


def test_full_and_read_only_disk_name_the_file(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from emoboost import utils

    corpus = _emodb(tmp_path / "emodb")
    out = tmp_path / "out" / "m.jsonl"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as mp:
        mp.setattr(utils.os, "fsync", full)
        assert main(["data", "prepare", "emodb", str(corpus), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"{out}: No space left on device (the disk is full" in line and not out.exists()

    def read_only(dir, prefix, suffix):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    with monkeypatch.context() as mp:
        mp.setattr(utils.tempfile, "mkstemp", lambda dir, prefix, suffix: read_only(dir, prefix, suffix))
        assert main(["data", "prepare", "emodb", str(corpus), "--out", str(out)]) == 2
    assert f"{out.parent}: Read-only file system (read-only file system: point --out" in _one_error_line(capsys)


def test_leakage_error_is_one_line(monkeypatch, capsys):
    from emoboost.experiment import run as runner
    from emoboost.protocols import LeakageError

    def leak(cfg):
        raise LeakageError("speaker(s) ['03'] appear in both train/test; refusing to run")

    monkeypatch.setattr(runner, "run_experiment", leak)
    assert main(["run", "--corpus", "emodb", "--out", "/nonexistent/run"]) == 2
    assert _one_error_line(capsys) == "emoboost: error: speaker(s) ['03'] appear in both train/test; refusing to run"


def _run_dir(tmp_path):
    """A run directory with one saved SVM model (no encoder needed), as ``predict`` reads it."""
    import numpy as np

    from emoboost.methods import UtteranceSet, get_method

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 8)
    data = UtteranceSet([f"u{i}" for i in range(16)], y, np.repeat(["a", "b", "c", "d"], 4),
                        {"egemaps": [(rng.standard_normal(4) + 3 * c).astype(np.float32) for c in y]})
    run = tmp_path / "run"
    get_method("svm")(["anger", "joy"], C_grid=[1.0], gamma_grid=[1.0], inner_folds=2).fit(data).save(
        run / "models" / "m0")
    bundle = {"classes": ["anger", "joy"], "method": "svm", "features": ["egemaps"], "segment_length": 3.0,
              "segment_hop": None, "models": ["models/m0"], "upstream": None}
    (run / "bundle.json").write_text(json.dumps(bundle))
    return run, bundle


def test_broken_run_files_name_the_file(tmp_path, capsys):
    from builders import write_tone

    run, bundle = _run_dir(tmp_path)
    wav = write_tone(tmp_path / "a.wav", seconds=0.5)
    (run / "bundle.json").write_text('{"classes": ["anger", ')
    assert main(["predict", str(run), str(wav)]) == 2
    assert f"{run / 'bundle.json'}: broken run bundle: not valid JSON" in _one_error_line(capsys)
    (run / "bundle.json").write_text(json.dumps({"classes": ["anger", "joy"], "models": ["models/m0"]}))
    assert main(["predict", str(run), str(wav)]) == 2
    assert f"{run / 'bundle.json'}: broken run bundle: 'features' must list" in _one_error_line(capsys)
    (run / "bundle.json").write_text(json.dumps(bundle))

    method_json = run / "models" / "m0" / "method.json"
    good = method_json.read_text()
    method_json.write_text(good[: len(good) // 2])
    assert main(["predict", str(run), str(wav)]) == 2
    assert f"{method_json}: broken method config: not valid JSON" in _one_error_line(capsys)
    method_json.write_text(good)

    weights = run / "models" / "m0" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["predict", str(run), str(wav)]) == 2
    assert f"{weights}: cannot load the model weights" in _one_error_line(capsys)


def test_ctrl_c_and_internal_errors(monkeypatch, capsys):
    import emoboost.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_data", interrupted)
    assert main(["data", "list"]) == 130
    assert "interrupted; rerun to resume" in _one_error_line(capsys)

    def bug(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cli, "cmd_data", bug)
    assert main(["data", "list"]) == 2
    assert _one_error_line(capsys) == ("emoboost: error: TypeError: unsupported operand (an internal error; rerun "
                                       "with -v for the traceback)")
    with pytest.raises(TypeError):
        main(["-v", "data", "list"])


# ---- predict / export / serve are lazy commands -------------------------------------------------------------

def test_predict_export_serve_register_their_arguments_when_chosen():
    from emoboost.cli import export, predict, serve

    args = build_parser().parse_args(["predict", "run", "a.wav", "dir/", "--no-vad", "--out", "r.csv"])
    assert args.func is predict.main and args.inputs == ["a.wav", "dir/"] and args.vad is False
    assert build_parser().parse_args(["predict", "run", "a.wav"]).vad is None  # automatic: on above 30 s
    args = build_parser().parse_args(["export", "bundle", "--format", "onnx", "--out", "o"])
    assert args.func is export.main and (args.bundle, args.format, args.out) == ("bundle", "onnx", "o")
    args = build_parser().parse_args(["serve", "bundle", "--port", "8123"])
    assert args.func is serve.main and args.port == 8123 and args.host == "127.0.0.1"
    assert build_parser().parse_args(["serve", "bundle"]).port == 8000


def test_predict_help_imports_no_torch_transformers_sklearn():
    mods = _imported_after("from emoboost.cli import main\ntry:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass")
    assert "emoboost" in mods and not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_plots_are_opt_in():
    from emoboost.cli import build_parser
    from emoboost.cli.run import _experiment_dict
    from emoboost.experiment.run import ExperimentConfig

    assert ExperimentConfig().plots is False
    assert "plots" not in _experiment_dict(build_parser().parse_args(["run", "--method", "svm"]))
    assert _experiment_dict(build_parser().parse_args(["run", "--method", "svm", "--plots"]))["plots"] is True


def test_device_flag_reaches_the_config():
    from emoboost.cli import build_parser
    from emoboost.cli.run import _experiment_dict

    assert "device" not in _experiment_dict(build_parser().parse_args(["run", "--method", "svm"]))
    assert _experiment_dict(build_parser().parse_args(["run", "--method", "svm", "--device", "cpu"]))["device"] == "cpu"


def test_methods_lists_methods_and_one_methods_parameters(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "msemoboost" in out and "logreg" in out
    assert main(["methods", "logreg", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    defaults = {p["name"]: p["default"] for p in info["parameters"]}
    assert defaults["Cs"] == [0.01, 0.1, 1.0] and defaults["layer"] == "auto"
    assert main(["methods", "linear"]) == 0
    assert "layer" in (out := capsys.readouterr().out) and "'auto'" in out and "inner CV" in out
    assert main(["methods", "msemoboost"]) == 0
    assert "enh_bound" in capsys.readouterr().out
    assert main(["methods", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown method 'nosuch'" in err


def test_closed_stdout_ends_quietly():
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "emoboost.cli", "methods", "msemoboost", "--long"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before anything is written (`| head` that already quit)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert "Traceback" not in err and "error" not in err


def test_upstreams_say_where_each_name_loads_from(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    weights = tmp_path / "shared" / "weights" / "whisper-base-encoder"
    weights.mkdir(parents=True)
    (weights / "config.json").write_text(json.dumps({"model_type": "whisper", "encoder_layers": 6, "d_model": 512}))
    snap = tmp_path / "hub" / "snap"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "wavlm", "num_hidden_layers": 12, "hidden_size": 768}))
    monkeypatch.setenv("EMOBOOST_SHARED", str(tmp_path / "shared"))
    cached = {"microsoft/wavlm-base-plus": str(snap / "config.json")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: cached.get(repo))
    assert main(["upstreams", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["whisper-base"]["where"], rows["whisper-base"]["size"]) == ("offline copy", "6 layers x 512")
    assert rows["whisper-base"]["path"] == str(weights)
    assert (rows["wavlm-base-plus"]["where"], rows["wavlm-base-plus"]["size"]) == ("hub cache", "12 layers x 768")
    assert rows["hubert-base"]["where"] == "download" and rows["hubert-base"]["path"] is None
    assert main(["upstreams"]) == 0
    out = capsys.readouterr().out
    assert f"offline copy {weights}" in out and "facebook/hubert-base-ls960" in out


@pytest.mark.parametrize("cmd", [["extract", "--upstream", "whisper-base"],
                                 ["benchmark", "--methods", "svm:features=egemaps"],
                                 ["run", "--method", "svm"], ["train", "--method", "svm"]])
def test_a_missing_corpus_hint_fits_the_command(cmd, tmp_path, monkeypatch, capsys):
    """Without --data-root, a corpus that is not here and has no download is one line telling the flag to use."""
    monkeypatch.setenv("EMOBOOST_SHARED", str(tmp_path / "shared"))
    monkeypatch.setenv("EMOBOOST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EMOBOOST_DATA", raising=False)
    out = [] if cmd[0] == "extract" else ["--out", str(tmp_path / "out")]
    assert main([cmd[0], "--corpus", "emovo", *cmd[1:], *out, "--no-progress"]) == 2
    err = _one_error_line(capsys)
    assert "no local copy of 'emovo'" in err and "pass its folder with --data-root" in err, err
    assert "voice.fub.it" in err and "to prepare" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--segment-hop", "0"], "segment_hop (--segment-hop) must be a positive number of seconds, got 0.0"),
    (["--segment-length", "0"], "segment_length (--segment-length) must be a positive number of seconds, got 0.0"),
    (["--segment-length", "-3"], "segment_length (--segment-length) must be a positive number of seconds, got -3.0"),
    (["--segment-length", "nan"], "segment_length (--segment-length) must be a positive number of seconds, got nan"),
    (["--segment-length", "1e-9"], "shorter than one sample"),
])
@pytest.mark.parametrize("cmd", [["run", "--method", "msemoboost"], ["extract", "--segment-encoding", "segment"]])
def test_bad_segmenting_is_refused_before_any_work(cmd, flags, message, tmp_path, capsys):
    """No corpus is read (the data root does not exist): the segmenting is checked first, in one line."""
    argv = [*cmd, "--corpus", "emodb", "--data-root", str(tmp_path / "absent"), "--cache-dir", str(tmp_path / "c"), *flags]
    if cmd[0] == "run":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "internal error" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "c").exists()
