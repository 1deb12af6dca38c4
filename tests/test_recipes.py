"""Every shipped recipe loads, names a known corpus, method and upstream, and its method accepts its
parameters (recipes rot silently otherwise: nothing runs them in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoboost.cli.run import _read_yaml
from emoboost.data.corpora import get_corpus
from emoboost.experiment.run import ExperimentConfig, store_spec
from emoboost.methods import get_method
from emoboost.pretrain.train import PretrainConfig
from emoboost.upstreams import KNOWN_UPSTREAMS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
EXPERIMENTS = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent.name != "pretrain")
PRETRAIN = sorted((RECIPES / "pretrain").glob("*.yaml"))


def test_there_are_recipes():
    assert len(EXPERIMENTS) >= 5 and len(PRETRAIN) >= 4


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_recipe_is_runnable_as_written(path):
    cfg = ExperimentConfig.from_dict(_read_yaml(str(path)))
    assert path.parent.name == cfg.corpus  # recipes/<corpus>/...
    classes = list(get_corpus(cfg.corpus).INFO.classes)
    method = get_method(cfg.method)(classes, **cfg.method_params)  # unknown or bad parameters raise here
    if "ssl" in method.requires:
        assert cfg.upstream in KNOWN_UPSTREAMS
        store_spec(cfg, method)  # the store settings suit the method (frames for windowed methods)
    text = path.read_text()
    assert "docs/benchmarks.md" in text or "benchmarks/tables.py" in text  # says what it reproduces


@pytest.mark.parametrize("path", PRETRAIN, ids=lambda p: p.name)
def test_pretrain_recipe_loads(path):
    cfg = PretrainConfig.from_yaml(path)
    assert cfg.model in ("mockingjay", "npc") and cfg.steps > 0
