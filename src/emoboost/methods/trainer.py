"""Shared training loop for segment-level PyTorch methods.

Training happens on segments (each labelled with its utterance's label); validation and prediction
average segment posteriors per utterance. Early stopping watches UA (``select=ua``, the default) or
the utterance-level cross-entropy (``select=loss``: smoother than UA on a handful of validation
speakers) on the validation speakers (drawn from training speakers by :mod:`emoboost.protocols`),
restoring the best epoch's weights.
Without validation data the model trains for ``max_epochs`` with no selection at all.
"""

from __future__ import annotations

import copy
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from emoboost.evaluation.metrics import segment_posteriors_to_utterance, unweighted_accuracy
from emoboost.methods.base import Method, UtteranceSet
from emoboost.methods.params import NON_NEGATIVE, Bool, Int, Param, one_of
from emoboost.utils import atomic_write_bytes, seed_everything


def cap_per_utterance(seg_utt: np.ndarray, cap: int | None) -> np.ndarray:
    """Indices of at most ``cap`` evenly spaced segments per utterance (all when ``cap`` is None)."""
    if not cap:
        return np.arange(len(seg_utt))
    keep = []
    for u in np.unique(seg_utt):
        idx = np.flatnonzero(seg_utt == u)
        keep.append(idx if len(idx) <= cap else idx[np.linspace(0, len(idx) - 1, int(cap)).round().astype(int)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


class TorchSegmentMethod(Method):
    """A method whose model maps a batch of segment inputs to class logits.

    Subclasses implement :meth:`segment_inputs` (utterances -> per-segment arrays, float32-able)
    and :meth:`build_module` (input shapes -> ``nn.Module`` with ``forward(**inputs) -> logits``
    and optionally ``embed(**inputs) -> [B, E]``).
    """

    # The training loop's parameters: every torch method takes them (a method's own PARAMS may give
    # them other defaults, e.g. "lr": 3e-4).
    PARAMS: ClassVar[dict[str, Any]] = {
        "lr": Param(1e-3, NON_NEGATIVE),  # Adam
        "weight_decay": Param(0.0, NON_NEGATIVE),
        "batch_size": Param(32, Int(1)),  # training segments per step
        "max_epochs": Param(40, Int(1)),
        "patience": Param(8, Int(1)),  # epochs without a better validation score before stopping
        "eval_batch_size": Param(64, Int(1)),
        "class_weighted": Param(False, Bool()),  # True: cross-entropy weighted by inverse class frequency
        # After early stopping picks an epoch count on the validation speakers, retrain from scratch on
        # training + validation speakers for that many epochs (no test-fold information is used).
        "refit": Param(False, Bool()),
        # At most this many (evenly spaced) training segments per utterance, so one very long recording
        # cannot outweigh hundreds of normal ones (None: no cap). Evaluation always uses every segment.
        "max_segments_per_utt": Param(200, Int(1, none=True)),
        # What early stopping watches on the validation speakers: "ua" or "loss" (utterance cross-entropy).
        "select": Param("ua", one_of("ua", "loss", lower=True)),
    }

    # Where fit and predict run ("auto": cuda when visible). A runtime option set by the runner
    # (--device), not a parameter: it never changes what the model is, and saved models load on the CPU.
    device: str = "cpu"

    def _device(self) -> torch.device:
        from emoboost.utils import resolve_device

        return torch.device(resolve_device(self.device))

    # -- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def segment_inputs(self, data: UtteranceSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """-> ({input name: [N_seg, ...] array}, seg_utt [N_seg])."""

    @abstractmethod
    def build_module(self, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
        """Build the network for per-segment input shapes (batch dimension excluded)."""

    def fit_preprocessing(self, inputs: dict[str, np.ndarray]) -> None:
        """Learn input normalisation on training segments only (default: none)."""

    def preprocess(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return x

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups (default: one, with the ``lr`` / ``weight_decay`` parameters)."""
        return [{"params": list(self.module_.parameters())}]

    # -- training ------------------------------------------------------------------------------
    def _batch(self, inputs: dict[str, np.ndarray], b: np.ndarray, dev: torch.device) -> dict[str, torch.Tensor]:
        """Rows ``b`` of every input, preprocessed on the CPU (normalisation statistics live there), on ``dev``."""
        return {k: self.preprocess(k, torch.from_numpy(np.asarray(v[b], dtype=np.float32))).to(dev)
                for k, v in inputs.items()}

    def _batches(self, inputs: dict[str, np.ndarray], idx: np.ndarray, bs: int):
        dev = self._module_device()
        for s in range(0, len(idx), bs):
            yield self._batch(inputs, idx[s : s + bs], dev)

    def _module_device(self) -> torch.device:
        p = next(self.module_.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _segment_proba(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(inputs.values())))
        self.module_.eval()
        out = []
        with torch.inference_mode():
            for batch in self._batches(inputs, np.arange(n), int(self.params["eval_batch_size"])):
                out.append(torch.softmax(self.module_(**batch), dim=-1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def fit(self, train: UtteranceSet, valid: UtteranceSet | None = None, seed: int = 0) -> TorchSegmentMethod:
        p = self.params
        seed_everything(seed)
        inputs, seg_utt = self.segment_inputs(train)
        y_seg = train.labels()[seg_utt]
        self.fit_preprocessing(inputs)
        self.input_shapes_ = {k: tuple(int(d) for d in v.shape[1:]) for k, v in inputs.items()}
        dev = self._device()
        self.module_ = self.build_module(self.input_shapes_).to(dev)
        opt = torch.optim.Adam(self.param_groups(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
        weight = None
        if p.get("class_weighted"):
            counts = np.bincount(y_seg, minlength=len(self.classes)).astype(np.float64)
            weight = torch.tensor(len(y_seg) / (len(self.classes) * np.maximum(counts, 1)), dtype=torch.float32, device=dev)
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        select = p["select"]
        have_valid = valid is not None and len(valid) > 0
        if have_valid:
            v_inputs, v_seg_utt = self.segment_inputs(valid)
        rng = np.random.default_rng(seed)
        train_idx = cap_per_utterance(seg_utt, p.get("max_segments_per_utt"))
        best, best_state, bad = -np.inf, None, 0
        self.history_: list[dict[str, float]] = []
        y_t = torch.from_numpy(y_seg.astype(np.int64)).to(dev)
        t0 = time.perf_counter()
        for epoch in range(int(p["max_epochs"])):
            self.module_.train()
            perm = train_idx[rng.permutation(len(train_idx))] if len(train_idx) < len(y_seg) else rng.permutation(len(y_seg))
            total, nb = 0.0, 0
            for s in range(0, len(perm), int(p["batch_size"])):
                b = perm[s : s + int(p["batch_size"])]
                loss = loss_fn(self.module_(**self._batch(inputs, b, dev)), y_t[torch.from_numpy(b).to(dev)])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                nb += 1
            rec = {"epoch": epoch + 1, "train_loss": total / max(nb, 1)}
            if have_valid:
                proba = segment_posteriors_to_utterance(self._segment_proba(v_inputs), v_seg_utt, len(valid))
                ua = unweighted_accuracy(valid.labels(), proba.argmax(1))
                loss = float(-np.log(np.clip(proba[np.arange(len(valid)), valid.labels()], 1e-12, None)).mean())
                rec["valid_UA"], rec["valid_loss"] = ua, loss
                score = ua if select == "ua" else -loss  # higher is better
                if score > best:
                    best, best_state, bad = score, copy.deepcopy(self.module_.state_dict()), 0
                    self.best_epoch_ = epoch + 1
                else:
                    bad += 1
            self.history_.append(rec)
            if have_valid and bad >= int(p["patience"]):
                break
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_)
        if p.get("refit") and have_valid:
            chosen, history = self.best_epoch_, self.history_
            saved = self.params
            self.params = {**p, "max_epochs": chosen, "refit": False}
            try:
                self.fit(UtteranceSet.concat([train, valid]), None, seed)
            finally:
                self.params = saved
            self.best_epoch_, self.selection_history_ = chosen, history
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    # -- inference -----------------------------------------------------------------------------
    def predict_segments(self, data: UtteranceSet) -> list[np.ndarray]:
        inputs, seg_utt = self.segment_inputs(data)
        proba = self._segment_proba(inputs)
        return [proba[seg_utt == i] for i in range(len(data))]

    def predict_proba(self, data: UtteranceSet) -> np.ndarray:
        inputs, seg_utt = self.segment_inputs(data)
        return segment_posteriors_to_utterance(self._segment_proba(inputs), seg_utt, len(data))

    def embed(self, data: UtteranceSet) -> np.ndarray | None:
        if not hasattr(self.module_, "embed"):
            return None
        inputs, seg_utt = self.segment_inputs(data)
        self.module_.eval()
        outs = []
        with torch.inference_mode():
            for batch in self._batches(inputs, np.arange(len(seg_utt)), int(self.params["eval_batch_size"])):
                outs.append(self.module_.embed(**batch).double().cpu().numpy())
        e = np.concatenate(outs)
        return segment_posteriors_to_utterance(e, seg_utt, len(data))

    def to_device(self, device: str) -> TorchSegmentMethod:
        """Move a fitted (or loaded) model to ``device``: later batches follow the module there."""
        self.device = device
        if hasattr(self, "module_"):
            self.module_.to(torch.device(device))
        return self

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.parameters())) if hasattr(self, "module_") else 0

    # -- persistence ---------------------------------------------------------------------------
    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Preprocessing state saved next to the weights (e.g. normalisation statistics)."""
        return {}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def _state_config(self) -> dict:
        return {"input_shapes": {k: list(v) for k, v in self.input_shapes_.items()}}

    def _save_weights(self, directory: Path) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        tensors.update({f"extra.{k}": v.contiguous() for k, v in self.extra_tensors().items()})
        atomic_write_bytes(directory / "model.safetensors", save(tensors))

    def _load_weights(self, directory: Path, state: dict) -> None:
        tensors = load_file(str(directory / "model.safetensors"))
        self.input_shapes_ = {k: tuple(v) for k, v in state["input_shapes"].items()}
        self.load_extra_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("extra.")})
        self.module_ = self.build_module(self.input_shapes_)
        self.module_.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.module_.eval()
