"""Layer choices as users write them (``3``, ``-1``, ``2,3,4``, ``weighted``, ``auto``), validated without torch.

``auto`` (pooled probes only) is chosen by inner CV among :func:`auto_candidates`; see
:mod:`emoboost.methods.inner_cv`.

Kept apart from :mod:`emoboost.methods.layers` (the torch module that applies a choice) so that pooled
methods, which never touch torch, can parse layers without importing it.
"""

from __future__ import annotations


def parse_layer(layer: int | str, num_layers: int) -> int | str:
    """Validate a layer choice: an index (negative counts from the top) or ``"weighted"``."""
    if isinstance(layer, str) and layer not in ("weighted",):
        try:
            layer = int(layer)
        except ValueError as e:
            raise ValueError(f"layer must be an integer or 'weighted', got {layer!r}") from e
    if isinstance(layer, int):
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"layer {layer} out of range for an upstream with {num_layers} hidden states")
        return layer % num_layers
    return layer


def parse_layers(layer: int | str | list | tuple, num_layers: int) -> list[int] | str:
    """One layer, a list (``"2,3,4"`` or ``[2, 3, 4]``: concatenated in that order) or ``"weighted"``."""
    if isinstance(layer, str) and "," in layer:
        layer = [v for v in layer.split(",") if v.strip()]
    if isinstance(layer, (list, tuple)):
        if not layer:
            raise ValueError("layer list is empty")
        out = [parse_layer(v, num_layers) for v in layer]
        if "weighted" in out:
            raise ValueError("'weighted' cannot be combined with layer indices")
        return [int(v) for v in out]
    one = parse_layer(layer, num_layers)
    return one if one == "weighted" else [int(one)]


AUTO = "auto"
MAX_RUN = 3  # longest run of adjacent hidden states ``layer=auto`` considers
COMMITTEE = 3  # how many of the best runs ``layer=auto`` averages (logreg) or concatenates the layers of (linear)


def is_auto(layer: object) -> bool:
    """Whether a layer choice asks the pooled probes to choose by inner CV (``layer=auto``)."""
    return isinstance(layer, str) and layer.strip().lower() == AUTO


def auto_candidates(num_layers: int, max_run: int = MAX_RUN) -> list[list[int]]:
    """What ``layer=auto`` chooses among: every run of 1..``max_run`` adjacent hidden states.

    Single layers first, then pairs, then triples (the order breaks ties toward fewer layers). The
    set grows linearly with the encoder's depth: 3L - 3 candidates for L >= 3 hidden states (18 for
    Whisper-base's 7, 12 for Whisper-tiny's 5, 36 for wav2vec2-base's 13, 72 for WavLM-large's 25).
    Runs, not arbitrary subsets: neighbouring layers carry similar information, so the best fixed
    choices on EmoDB (3; 2,3,4) are runs, and the search stays linear in depth instead of combinatorial.
    """
    if num_layers < 1:
        raise ValueError(f"an upstream with {num_layers} hidden states has no layer to choose")
    return [list(range(s, s + k)) for k in range(1, max(1, int(max_run)) + 1) for s in range(num_layers - k + 1)]


def layers_text(layers: list[int]) -> str:
    """``[2, 3, 4]`` -> ``"2,3,4"``: how a choice is written in reports and ``-p layer=``."""
    return ",".join(str(int(v)) for v in layers)
