"""Layer choices as users write them (``3``, ``-1``, ``2,3,4``, ``weighted``, ``auto``), validated without torch.

``auto`` (pooled probes only) is chosen by inner CV among :func:`auto_candidates`; see
:mod:`emoboost.methods.inner_cv`.

The layer syntax, everywhere in emoboost: a layer is a hidden-state index of the encoder, ``0`` its
input embeddings (before the first transformer layer) up to ``L - 1`` its last layer (whisper-base:
0..6). A method's ``layer`` parameter (``-p layer=...``, parsed here) is one index (negative counts
from the top: ``-1`` is the last), a comma-separated list ``2,3,4`` (or ``[2, 3, 4]``; their features
are concatenated in that order) or ``weighted`` (a learned softmax-weighted sum of all of them). The
feature store's ``--layers`` / ``store_layers`` (which layers keep their frames on disk,
:func:`emoboost.features.store.parse_kept_layers`) takes ``all`` or non-negative indices in the same
comma-separated form.

A method declares which of these it accepts with :class:`LayerRule` (its ``layer`` parameter's rule:
the syntax is checked when the method is built, the range against the encoder when data arrive).
Kept apart from :mod:`emoboost.methods.layers` (the torch module that applies a choice) so that pooled
methods, which never touch torch, can parse layers without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emoboost.methods.params import Rule


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


@dataclass(frozen=True)
class LayerRule(Rule):
    """The ``layer`` parameter's syntax, checked when a method is built (the range needs the encoder: it is
    checked against the data by :func:`parse_layer`). Stored as written once: an index as an int, a list
    (``"2,3,4"``) as a list of ints, a named choice (``modes``: ``weighted``, ...) as its lower-case name."""

    modes: tuple[str, ...] = ()
    lists: bool = False  # several layers, concatenated

    def __call__(self, value: Any) -> Any:
        v = value.strip() if isinstance(value, str) else value
        if isinstance(v, str) and v.lower() in self.modes:
            return v.lower()
        if self.lists and isinstance(v, str) and "," in v:
            v = [p for p in v.split(",") if p.strip()]
        if isinstance(v, (list, tuple)) and self.lists:
            out = [self._index(p, value) for p in v]
            if not out:
                raise self.refuse(value)
            return out
        return self._index(v, value)

    def _index(self, v: Any, value: Any) -> int:
        if isinstance(v, str):
            try:
                return int(v.strip())
            except ValueError:
                raise self.refuse(value) from None
        if isinstance(v, int) and not isinstance(v, bool):
            return int(v)
        raise self.refuse(value)

    def describe(self) -> str:
        what = ("one layer or a list (an index, -1 = the last; a list such as 2,3,4 concatenates)" if self.lists
                else "a layer index (-1 = the last)")
        if self.modes:
            what += " or " + (repr(self.modes[0]) if len(self.modes) == 1 else "one of " + ", ".join(map(repr, self.modes)))
        return what

    def invalid(self) -> list[Any]:
        out: list[Any] = ["bogus", 1.5, True, None]
        out += [] if "weighted" in self.modes else ["weighted"]
        out += [[]] if self.lists else [[1, 2]]
        return out
