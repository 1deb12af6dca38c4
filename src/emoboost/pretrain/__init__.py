"""EMS pretraining: emotion-intensity-guided masking for Mockingjay and NPC.

Liu & Ma, "Emotion-Aware Speech Self-Supervised Representation Learning with Intensity Knowledge".
Training only: the networks (Mockingjay, NPC, their log-mel front end and the ``build_model``
registry) are upstreams (:mod:`emoboost.upstreams.mockingjay`, :mod:`emoboost.upstreams.npc`,
:mod:`emoboost.upstreams.frontend`, :mod:`emoboost.upstreams.local`); this package imports them, never
the reverse. Pieces: :mod:`.intensity` (relative-attribute ranking -> frame intensity), :mod:`.align`
(to each model's frame rate), :mod:`.masking` (random / EMS), :mod:`.losses` (the pretraining
objectives), :mod:`.train` (resumable pretraining -> an upstream directory), :mod:`.probe` (phone and
utterance probes), :mod:`.cli` (``emoboost pretrain`` / ``emoboost intensity``).
"""

from __future__ import annotations


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


__all__ = ["add_intensity_args", "add_pretrain_args", "run_intensity", "run_pretrain"]
