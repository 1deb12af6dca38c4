import pytest

from emoboost.cli import _experiment_dict, apply_overrides, build_parser, main
from emoboost.runner import ExperimentConfig


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
