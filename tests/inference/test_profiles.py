"""Speaker profiles in every deployed path: the same clip enrolled and predicted through the API, the CLI and
the server gives the same probabilities (torch and ONNX); --speaker-regex never uses a file's own clips; the
server's live session reproduces the CV ``online`` protocol clip for clip; one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import emoboost
from builders import adapted_models, cv_run, save_tiny_whisper, tiny_corpus
from emoboost.cli import main
from emoboost.inference.engine import Engine
from emoboost.inference.profiles import SpeakerProfile

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return adapted_models(tmp_path_factory.mktemp("adapted"))


def _wavs(corpus: Path, speaker: str) -> list[Path]:
    return sorted((corpus / "wav").glob(f"{speaker}*.wav"))


def _client(model: Path, backend: str, **kw):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emoboost.inference import serve

    return TestClient(serve.create_app(Engine.load(model, backend=backend), **kw))


def _post(client, path: str, f: Path, **params):
    return client.post(path, files={"file": (f.name, f.read_bytes(), "audio/wav")}, params=params)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_api_cli_and_server_enrol_and_predict_identically(models, tmp_path, capsys, backend):
    corpus, _, final = models
    clips, probe = _wavs(corpus, "09")[:6], _wavs(corpus, "09")[8]
    m = emoboost.load(final, backend=backend)
    m.enrol("anna", clips)
    api = m.predict(probe, speaker="anna").probabilities
    assert main(["enrol", str(final), *map(str, clips), "--speaker", "anna", "--out", str(tmp_path / "anna.p"),
                 "--backend", backend]) == 0
    capsys.readouterr()
    assert main(["predict", str(final), str(probe), "--profile", str(tmp_path / "anna.p"), "--format", "json",
                 "--backend", backend]) == 0
    cli = json.loads(capsys.readouterr().out)[0]
    client = _client(final, backend)
    for c in clips:
        assert _post(client, "/enrol", c, speaker="anna").json()["added"] == 1
    srv = _post(client, "/predict", probe, speaker="anna").json()
    assert cli["probabilities"] == api == srv["probabilities"]
    assert cli["speaker"] == {"name": "anna", "clips_heard": 6} and srv["speaker"]["clips_heard"] == 6
    plain = m.predict(probe).probabilities
    assert max(abs(api[c] - plain[c]) for c in api) > 1e-3  # the profile changes the answer: the check can fail
    # the profile file serves the torch model and its ONNX form alike
    other = emoboost.load(final, backend="onnx" if backend == "torch" else "torch")
    there = other.predict(probe, speaker=tmp_path / "anna.p").probabilities
    assert max(abs(there[c] - api[c]) for c in api) < 1e-4


def test_speaker_regex_never_uses_a_files_own_clips(models, capsys):
    corpus, _, final = models
    files = _wavs(corpus, "10")
    assert main(["predict", str(final), str(corpus / "wav"), "--speaker-regex", r"^(\d\d)", "--format", "json",
                 "--backend", "torch", "--no-progress"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == len(list((corpus / "wav").glob("*.wav")))
    m = emoboost.load(final, backend="torch")
    moved = 0
    for i, f in enumerate(files):
        others = m.enrol(f"others{i}", [g for g in files if g != f])
        want = m.predict(f, speaker=others).probabilities
        got = rows[f.name]["probabilities"]
        assert got == pytest.approx(want, abs=2e-5) and rows[f.name]["speaker"]["clips_heard"] == len(files) - 1
        with_itself = m.predict(f, speaker=m.enrol(f"all{i}", files)).probabilities
        moved += max(abs(with_itself[c] - got[c]) for c in got) > 1e-3
    assert moved  # a file's own clip would change its answer: this test fails if --speaker-regex used it
    assert main(["predict", str(final), *map(str, files[:2]), "--speaker-regex", r"^(\d\d)", "--format", "csv",
                 "--backend", "torch", "--no-progress"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["speaker"], r["speaker_clips"]) for r in table] == [("10", "1"), ("10", "1")]


def test_server_live_session_reproduces_the_online_protocol(models):
    """The CV run's fold model, served: its test speaker's clips posted in the protocol's order with learn=true
    get the fold result's probabilities (each clip adapted with the clips before it)."""
    corpus, run, _ = models
    result = json.loads((run / "folds" / "fold00_seed0.json").read_text())
    paths = {json.loads(line)["id"]: Path(json.loads(line)["path"]) for line in (run / "manifest.jsonl").open()}
    client = _client(run / "models" / "fold00_seed0", "torch")
    for k, (uid, want) in enumerate(zip(result["test_ids"], result["proba"])):
        body = _post(client, "/predict", paths[uid], speaker="live", learn=True).json()
        assert body["speaker"] == {"name": "live", "clips_heard": k, "clips": k + 1}
        assert list(body["probabilities"].values()) == pytest.approx(want, abs=1e-4)


def test_server_speakers_are_bounded_persisted_and_refused_in_one_line(models, tmp_path):
    corpus, _, final = models
    clip = _wavs(corpus, "03")[0]
    client = _client(final, "torch", speakers=None)
    r = _post(client, "/predict", clip, speaker="nobody")
    assert r.status_code == 404 and r.json()["detail"].startswith("speaker 'nobody': unknown speaker")
    assert "\n" not in r.json()["detail"]
    assert _post(client, "/predict", clip, speaker="../etc").status_code == 400
    assert _post(client, "/enrol", clip).status_code == 400  # no speaker named
    from emoboost.inference.profiles import SpeakerStore

    store = SpeakerStore(Engine.load(final, backend="torch"), tmp_path / "profiles", max_speakers=2)
    client = _client(final, "torch", speakers=store)
    for name in ("a", "b"):
        assert _post(client, "/enrol", clip, speaker=name).json() == {"speaker": name, "clips": 1, "added": 1}
    r = _post(client, "/enrol", clip, speaker="c")
    assert r.status_code == 409 and "limit (2)" in r.json()["detail"]
    assert _post(client, "/predict", clip, speaker="a", learn=True).json()["speaker"]["clips"] == 2
    saved = sorted(p.name for p in (tmp_path / "profiles").iterdir())
    assert saved == ["a.profile.safetensors", "b.profile.safetensors"]  # atomic writes leave no temp files
    again = _client(final, "torch", speakers=SpeakerStore(Engine.load(final, backend="torch"), tmp_path / "profiles"))
    assert sorted((s["speaker"], s["clips"]) for s in again.get("/speakers").json()["speakers"]) == [("a", 2), ("b", 1)]
    assert again.delete("/speakers/b").json() == {"deleted": "b"} and not (tmp_path / "profiles" / "b.profile.safetensors").exists()
    assert again.get("/health").json()["speakers"] == {"adapts": True, "count": 1}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOBOOST_CACHE", str(tmp / "cache"))
        return cv_run(tiny_corpus(tmp / "emodb"), save_tiny_whisper(tmp / "w"), tmp / "run", tmp / "cache", "logreg",
                      {"layer": 2, "Cs": [1.0]})


def test_models_without_adaptation_and_foreign_profiles_are_one_line(models, plain, tmp_path, capsys):
    corpus, _, final = models
    clip = _wavs(corpus, "03")[0]
    m = emoboost.load(plain)
    with pytest.raises(ValueError, match="cannot adapt to a speaker"):
        m.enrol("x", [clip])
    assert main(["enrol", str(plain), str(clip), "--speaker", "x", "--out", str(tmp_path / "x.p")]) == 2
    assert "cannot adapt to a speaker" in capsys.readouterr().err
    r = _post(_client(plain, "torch"), "/predict", clip, speaker="x")
    assert r.status_code == 400 and "cannot adapt" in r.json()["detail"]
    sp = emoboost.load(final, backend="torch").enrol("y", [clip])
    sp.save(tmp_path / "y.p")
    mine = SpeakerProfile.load(tmp_path / "y.p")
    assert mine.clips == 1 and mine.speaker == "y"
    foreign = SpeakerProfile(mine.speaker, {**mine.model, "adapters": ["0" * 16]}, mine.profile)
    foreign.save(tmp_path / "foreign.p")
    assert main(["predict", str(final), str(clip), "--profile", str(tmp_path / "foreign.p")]) == 2
    assert "made with another model" in capsys.readouterr().err
    (tmp_path / "junk.p").write_bytes(b"not a profile")
    with pytest.raises(ValueError, match="not a speaker profile"):
        SpeakerProfile.load(tmp_path / "junk.p")
    with pytest.raises(ValueError, match="unknown speaker"):
        emoboost.load(final, backend="torch").predict(clip, speaker="nobody")
