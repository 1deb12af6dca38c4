"""EMS pretraining: emotion-intensity-guided masking for Mockingjay and NPC.

Liu & Ma, "Emotion-Aware Speech Self-Supervised Representation Learning with Intensity Knowledge".
Pieces: :mod:`.intensity` (relative-attribute ranking -> frame intensity), :mod:`.align` (to each
model's frame rate), :mod:`.masking` (random / EMS), :mod:`.mockingjay`, :mod:`.npc`,
:mod:`.train` (resumable pretraining -> an upstream directory), :mod:`.probe` (phone and
utterance probes), :mod:`.cli` (``emoboost pretrain`` / ``emoboost intensity``).
"""

from __future__ import annotations

from typing import Any

MODEL_TYPES = ("mockingjay", "npc")


def build_model(model_type: str, model_config: dict[str, Any] | None = None,
                feature_config: dict[str, Any] | None = None):
    """A fresh (randomly initialised) pretraining model from plain-dict configs."""
    from emoboost.pretrain.frontend import FeatureConfig

    feat = FeatureConfig.from_dict(feature_config)
    mc = dict(model_config or {})
    if model_type == "mockingjay":
        from emoboost.pretrain.mockingjay import Mockingjay, MockingjayConfig

        return Mockingjay(MockingjayConfig(**mc), feat)
    if model_type == "npc":
        from emoboost.pretrain.npc import NPC, NPCConfig

        if "vq_codebook_sizes" in mc:
            mc["vq_codebook_sizes"] = tuple(mc["vq_codebook_sizes"] or ())
        return NPC(NPCConfig(**mc), feat)
    raise ValueError(f"unknown pretraining model {model_type!r}; known: {', '.join(MODEL_TYPES)}")


def add_pretrain_args(parser) -> None:  # noqa: ANN001 - argparse parser
    from emoboost.pretrain.cli import add_pretrain_args as f

    f(parser)


def run_pretrain(args) -> int:  # noqa: ANN001
    from emoboost.pretrain.cli import run_pretrain as f

    return f(args)


def add_intensity_args(parser) -> None:  # noqa: ANN001
    from emoboost.pretrain.cli import add_intensity_args as f

    f(parser)


def run_intensity(args) -> int:  # noqa: ANN001
    from emoboost.pretrain.cli import run_intensity as f

    return f(args)


__all__ = ["MODEL_TYPES", "add_intensity_args", "add_pretrain_args", "build_model", "run_intensity", "run_pretrain"]
