"""Imports run down the data flow: nothing under ``emoboost.upstreams`` imports ``emoboost.pretrain``.

The Mockingjay / NPC networks are upstreams at use time; training code imports them, not the
reverse. Checked twice: statically (every import statement of every source file) and dynamically
(loading and running a pretrained checkpoint in a fresh interpreter leaves ``emoboost.pretrain``
unimported).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import torch

import emoboost.upstreams

REPO = Path(__file__).resolve().parents[2]
UPSTREAMS = Path(emoboost.upstreams.__file__).resolve().parent
FORBIDDEN = "emoboost.pretrain"


def _absolute(module: str | None, level: int, package: str) -> str:
    """``from ..x import y`` inside ``package`` -> ``<package minus level-1 parts>.x``."""
    if level == 0:
        return module or ""
    base = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def pretrain_imports(path: Path, package: str = "emoboost.upstreams") -> list[tuple[int, str]]:
    """(line, module) of every import of ``emoboost.pretrain`` (or below) in one source file:
    ``import``, ``from ... import`` (relative ones resolved), ``importlib.import_module("...")``
    and ``__import__("...")`` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(node.module, node.level, package)
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]  # ``from emoboost import pretrain``
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if fname in ("import_module", "__import__"):
                names = [node.args[0].value]
        found += [(node.lineno, n) for n in names if n == FORBIDDEN or n.startswith(FORBIDDEN + ".")]
    return sorted(set(found))


def test_the_scanner_finds_every_form_of_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Docs may name emoboost.pretrain.train.pretrain freely."""\n'
                   "import emoboost.pretrain.train\n"
                   "from emoboost.pretrain import build_model\n"
                   "from emoboost import pretrain\n"
                   "from ..pretrain.masking import MaskConfig\n"
                   "def f():\n"
                   "    import importlib\n"
                   "    return importlib.import_module('emoboost.pretrain.losses')\n"
                   "from emoboost.pretraining_notes import x  # another name: allowed\n")
    assert sorted({line for line, _ in pretrain_imports(bad)}) == [2, 3, 4, 5, 8]


def test_no_upstream_module_imports_pretrain():
    files = sorted(UPSTREAMS.rglob("*.py"))
    assert {f.name for f in files} >= {"local.py", "mockingjay.py", "npc.py", "frontend.py"}
    offenders = {str(f.relative_to(UPSTREAMS)): hits for f in files if (hits := pretrain_imports(f))}
    assert offenders == {}, f"upstreams must not import {FORBIDDEN}: {offenders}"


def test_loading_a_pretrained_checkpoint_imports_no_training_code(tmp_path):
    from emoboost.pretrain.train import PretrainConfig, export_upstream
    from emoboost.upstreams.local import build_model

    dirs = []
    for model_type, mc in (("mockingjay", {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                           "intermediate_size": 32}),
                           ("npc", {"hidden_size": 16, "num_blocks": 2, "kernel_size": 9, "mask_size": 3})):
        cfg = PretrainConfig(model=model_type, model_config=mc, feature={"n_mels": 20})
        torch.manual_seed(0)
        dirs.append(str(export_upstream(tmp_path / model_type, build_model(model_type, mc, cfg.feature).eval(),
                                        cfg, {})))
    code = ("import sys\n"
            "import numpy as np\n"
            "import emoboost.upstreams.local\n"
            "loaded = [sorted(m for m in sys.modules if m.startswith('emoboost.pretrain'))]\n"
            "from emoboost.upstreams import build_upstream\n"
            f"for d in {dirs!r}:\n"
            "    out = build_upstream(d).extract(np.zeros(4000, dtype=np.float32))\n"
            "    assert out.ndim == 3 and out.shape[1] > 0, out.shape\n"
            "loaded.append(sorted(m for m in sys.modules if m.startswith('emoboost.pretrain')))\n"
            "print(loaded)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "EMOBOOST_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[[], []]"
