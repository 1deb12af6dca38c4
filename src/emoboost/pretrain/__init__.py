"""EMS pretraining: emotion-intensity-guided masking for Mockingjay and NPC.

Liu & Ma, "Emotion-Aware Speech Self-Supervised Representation Learning with Intensity Knowledge".
Training only: the networks (Mockingjay, NPC, their log-mel front end and the ``build_model``
registry) are upstreams (:mod:`emoboost.upstreams.mockingjay`, :mod:`emoboost.upstreams.npc`,
:mod:`emoboost.upstreams.frontend`, :mod:`emoboost.upstreams.local`); this package imports them, never
the reverse. Pieces: :mod:`.intensity` (acoustic features -> frame intensity), :mod:`.ranking` (training the relative-attribute
ranking function on RAVDESS), :mod:`.align`
(to each model's frame rate), :mod:`.masking` (random / EMS), :mod:`.losses` (the pretraining
objectives), :mod:`.train` (resumable pretraining -> an upstream directory), :mod:`.probe` (phone and
utterance probes), the command line lives in :mod:`emoboost.cli.pretrain`.
"""

