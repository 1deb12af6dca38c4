"""Speaker profiles on disk and in use: enrolment from clips, adapted predictions, live sessions.

A profile (:class:`~emoboost.methods.adaptation.Profile`) is what a speaker's clips add up to for one
model: the clip count and, per speaker adapter of the model, the sum of the clips' pooled inputs and of
their population-head posteriors. It enters the engine only as an explicit argument
(:class:`~emoboost.inference.engine.Adapt`), never from the other clips of a batch.

On disk a profile is one safetensors file (never pickle): the arrays ``n``, ``x.<adapter>`` and
``p.<adapter>``, and in its header the JSON description (format, speaker, clips, and the model it belongs
to: the encoder fingerprint, the adapter fingerprints, the classes). A profile made with another model is
refused with one line; the torch model and its ONNX form share adapters, so a profile serves both.

:class:`SpeakerStore` holds named profiles for :func:`emoboost.load` models and the server: bounded in
count (each profile has a fixed size), optionally persisted one file per speaker through the atomic
writer, so a killed server loses at most the clip in flight.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.inference.engine import Adapt
from emoboost.methods.adaptation import Profile

log = logging.getLogger(__name__)
FORMAT = "emoboost-speaker-profile"
SUFFIX = ".profile.safetensors"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
DEFAULT_MAX_SPEAKERS = 1000


class UnknownSpeaker(KeyError):
    """No profile under this name (the server answers 404)."""


class SpeakerLimit(OverflowError):
    """A new speaker would exceed the store's limit (the server answers 409)."""


def check_name(name: Any) -> str:
    """A speaker name usable as a file name: letters, digits and ``_.@+-``, 1-64 characters."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"speaker {name!r}: a speaker name is 1-64 letters, digits or _.@+- (starting with a "
                         f"letter or digit)")
    return name


def model_key(engine: Any) -> dict:
    """What a profile is tied to: the encoder fingerprint, the model's adapter fingerprints, its classes."""
    return {"encoder": engine.bundle.fingerprint, "adapters": sorted(engine.backend.adapters()),
            "classes": list(engine.classes)}


@dataclass
class SpeakerProfile:
    """A named profile and the model it belongs to (:func:`model_key`)."""

    speaker: str
    model: dict
    profile: Profile = field(default_factory=Profile)

    @property
    def clips(self) -> int:
        return int(self.profile.n)

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "clips": self.clips}

    def check(self, engine: Any, where: str | None = None) -> SpeakerProfile:
        """This profile, if it was made with ``engine``'s model; else one line naming it."""
        key = model_key(engine)
        if self.model.get("adapters") != key["adapters"] or self.model.get("encoder") != key["encoder"]:
            raise ValueError(f"{where or 'speaker ' + repr(self.speaker)}: the profile was made with another model "
                             f"(adapters {self.model.get('adapters')}, this model's {key['adapters']}); enrol the "
                             f"speaker again with this model")
        return self

    def learn(self, terms: dict, count: int) -> SpeakerProfile:
        """A new profile with ``count`` more clips whose sums are ``terms``."""
        if not count:
            return self
        return SpeakerProfile(self.speaker, self.model, self.profile.add(terms, count=count))

    def save(self, path: str | Path) -> Path:
        """Write the profile atomically (safetensors; the description in its header)."""
        from safetensors.numpy import save

        from emoboost.utils import atomic_write_bytes

        arrays = {"n": np.array([self.profile.n], dtype=np.int64)}
        for fp, (sx, sp) in self.profile.sums.items():
            arrays[f"x.{fp}"] = np.ascontiguousarray(sx, dtype=np.float64)
            arrays[f"p.{fp}"] = np.ascontiguousarray(sp, dtype=np.float64)
        meta = {"format": FORMAT, "version": 1, "speaker": self.speaker, "clips": self.clips, "model": self.model}
        return atomic_write_bytes(path, save(arrays, metadata={"emoboost": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | Path) -> SpeakerProfile:
        """Read a profile file; anything else (missing, not safetensors, another format) is one line naming it."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such speaker profile")
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {}).get("emoboost", "{}"))
                arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{path}: not a speaker profile (not a readable safetensors file: {e})".splitlines()[0]) from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "n" not in arrays:
            raise ValueError(f"{path}: not an emoboost speaker profile (made by emoboost enrol)")
        fps = sorted(k[2:] for k in arrays if k.startswith("x."))
        try:
            sums = {fp: (arrays[f"x.{fp}"].astype(np.float64), arrays[f"p.{fp}"].astype(np.float64)) for fp in fps}
        except KeyError as e:
            raise ValueError(f"{path}: broken speaker profile (missing array {e.args[0]})") from e
        return cls(str(meta.get("speaker", path.name)), dict(meta.get("model") or {}), Profile(int(arrays["n"][0]), sums))


def adapt_to(engine: Any, speaker: SpeakerProfile | None, hear: bool = False) -> Adapt:
    """The engine's :class:`Adapt` for ``speaker`` (None: the training population), after checking that the model
    adapts and that the profile is this model's; ``hear`` collects what the clip adds to the profile."""
    engine.backend.adapters()
    if speaker is not None:
        speaker.check(engine)
    return Adapt(speaker.profile if speaker is not None and speaker.clips else None, [] if hear else None)


def predict_heard(engine: Any, audio: Any, name: str, speaker: SpeakerProfile | None, timeline: bool = False,
                  vad: bool | None = None) -> tuple[Any, dict, int]:
    """Classify one clip (a path, or a 16 kHz waveform) adapted to ``speaker`` -> (prediction, what the clip adds
    to a profile, clips it counts for: 1, a VAD window count, or 0 for silence)."""
    adapt = adapt_to(engine, speaker, hear=True)
    if isinstance(audio, np.ndarray):
        pred = engine.predict_wav(audio, name, timeline, vad=vad, adapt=adapt)
    else:
        pred = engine.predict_file(audio, timeline=timeline, vad=vad, adapt=adapt)
    heard = adapt.heard or []
    return pred, (engine.backend.terms(heard) if heard else {}), len(heard)


def leave_one_out(engine: Any, files: list, regex: str, vad: bool | None,
                  on_error: Any) -> Iterator[tuple[Any, Adapt, dict]]:
    """``predict --speaker-regex``: (file, its :class:`Adapt`, speaker info) with each file adapted to the other
    files of its speaker — never its own clips. The speaker is what ``regex`` yields from the file name (the
    folder corpus's ``speaker_regex`` rule); files without one, or unreadable, go to ``on_error(path, problem)``.
    Speaker by speaker (memory grows with the largest speaker, not the corpus); each file is read twice."""
    from emoboost.audio import AudioError
    from emoboost.data.corpora.folder import speaker_of

    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise ValueError(f"--speaker-regex {regex!r}: not a regular expression ({e})") from e
    engine.backend.adapters()
    groups: dict[str, list] = {}
    for f in files:
        s = speaker_of(pattern, f)
        if s is None:
            on_error(str(f), f"--speaker-regex {regex!r} finds no speaker in the file name")
        else:
            groups.setdefault(s, []).append(f)
    for s, members in groups.items():
        terms: dict = {}
        for f in members:
            try:
                terms[f] = predict_heard(engine, f, str(f), None, vad=vad)[1:]
            except (AudioError, OSError, ValueError) as e:
                on_error(getattr(e, "path", str(f)), getattr(e, "problem", None) or str(e).splitlines()[0])
        total = Profile()
        for t, n in terms.values():
            total = total.add(t, count=n) if n else total
        for f, (t, n) in terms.items():
            others = total.add(t, sign=-1, count=n) if n else total
            yield f, Adapt(others if others.n else None), {"name": s, "clips_heard": others.n}


class SpeakerStore:
    """Named profiles for one model: at most ``max_speakers``, each a fixed size; with ``directory``, loaded from
    and saved to ``<directory>/<speaker>.profile.safetensors`` (atomically, on every change). Thread-safe."""

    def __init__(self, engine: Any, directory: str | Path | None = None, max_speakers: int = DEFAULT_MAX_SPEAKERS):
        if not (isinstance(max_speakers, int) and max_speakers >= 1):
            raise ValueError(f"--max-speakers must be an integer >= 1, got {max_speakers}")
        self.engine, self.max_speakers = engine, max_speakers
        self.directory = Path(directory) if directory is not None else None
        self.key = model_key(engine)
        self._lock = threading.RLock()
        self._profiles: dict[str, SpeakerProfile] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for f in sorted(self.directory.glob("*" + SUFFIX))[: self.max_speakers]:
                try:
                    sp = SpeakerProfile.load(f).check(engine, str(f))
                    self._profiles[check_name(sp.speaker)] = sp
                except (OSError, ValueError) as e:
                    log.warning("speaker profile skipped: %s", e)

    def names(self) -> list[dict]:
        with self._lock:
            return [sp.to_dict() for sp in self._profiles.values()]

    def get(self, name: str, create: bool = False) -> SpeakerProfile:
        """The named profile; a new empty one with ``create``; else one line for an unknown speaker."""
        check_name(name)
        with self._lock:
            sp = self._profiles.get(name)
            if sp is None and not create:
                raise UnknownSpeaker(f"speaker {name!r}: unknown speaker")
            if sp is None and len(self._profiles) >= self.max_speakers:
                raise SpeakerLimit(f"speaker {name!r}: the speaker limit ({self.max_speakers}) is reached; "
                                    f"delete a speaker first")
            return sp if sp is not None else SpeakerProfile(name, dict(self.key))

    def put(self, sp: SpeakerProfile) -> SpeakerProfile:
        with self._lock:
            if sp.speaker not in self._profiles and len(self._profiles) >= self.max_speakers:
                raise SpeakerLimit(f"speaker {sp.speaker!r}: the speaker limit ({self.max_speakers}) is reached")
            if self.directory is not None:
                sp.save(self.directory / f"{sp.speaker}{SUFFIX}")
            self._profiles[sp.speaker] = sp
            return sp

    def add(self, name: str, terms: dict, count: int) -> SpeakerProfile:
        """Add a clip's terms to the named profile (created when new), under the lock: no update is lost."""
        with self._lock:
            sp = self._profiles.get(name) or SpeakerProfile(check_name(name), dict(self.key))
            return self.put(sp.learn(terms, count))

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            if self._profiles.pop(name, None) is None:
                raise UnknownSpeaker(f"speaker {name!r}: unknown speaker")
            if self.directory is not None:
                (self.directory / f"{name}{SUFFIX}").unlink(missing_ok=True)
