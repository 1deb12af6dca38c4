"""HTTP server for a trained model: ``POST /predict``, ``GET /health`` and a page at ``GET /``.

:func:`create_app` wraps any predictor with ``.classes`` and ``.predict_wav(wav, path, timeline, vad=)``
(:class:`emoboost.inference.engine.Engine`: an upload gets exactly what ``emoboost predict`` gives the
same file — VAD above 30 s, silence flagged, too short refused), so the HTTP layer is tested with small
stand-ins that never depend on how a model computes. Uploads are copied to a temporary file (removed whatever happens) and
decoded by :mod:`emoboost.audio`, so the server accepts and refuses exactly what the command line does.
Every bad upload gets a 4xx JSON ``{"detail": "<file>: <problem>"}`` and the server keeps serving; no
response carries a NaN (audio or a model answer that is not finite is refused with a 422).

Memory is bounded by admission control, not by how many clients connect: at most ``max_concurrent``
requests are inside (decoding, then classifying), at most ``max_queue`` more wait for a place, and any
request beyond that is answered 503 with a ``Retry-After`` header at once. Decoding happens inside, block
by block, so each admitted request holds at most its ``max_seconds`` of 16 kHz audio plus one block, whatever
the upload's rate or channel count. One prediction runs at a time (models are not assumed thread-safe,
and on a small CPU parallel requests would only compete for the same cores). Every response to
``/predict`` is counted in ``/health``, which says nothing about the model beyond its kind, method,
encoder name and classes (a bundle holds head weights and filesystem paths).

Speakers (a pooled model trained with ``-p adapt=...``; :mod:`emoboost.inference.profiles`):
``POST /enrol?speaker=NAME`` adds an unlabelled clip to NAME's profile; ``POST /predict?speaker=NAME``
adapts the answer to it (an unknown NAME is a 404 with one line); ``POST /predict?speaker=NAME&learn=true``
is a live session: the clip is classified with what the session has heard before it (the first with the
training population), then added. ``GET /speakers`` lists them with their clip counts, ``DELETE
/speakers/NAME`` forgets one. At most ``--max-speakers`` profiles, each a fixed size (sums, however many
clips); with ``--profiles DIR`` each is saved atomically after every change and loaded at start.

fastapi / uvicorn / python-multipart are the ``serve`` extra and are imported only when a server is built.
"""

import logging
import math
import os
import re
import tempfile
import threading
import time
import unicodedata
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from emoboost.audio import SAMPLE_RATE, AudioError, audio_info, stream_audio
from emoboost.inference.engine import NonFiniteAnswer
from emoboost.inference.profiles import SpeakerLimit, UnknownSpeaker

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_BYTES = 100 * 2**20
DEFAULT_MAX_CONCURRENT = 2  # one request decodes while another is classified
DEFAULT_MAX_QUEUE = 8  # waiting requests hold no decoded audio (their upload is spooled to disk)
MAX_NAME_CHARS = 120
DECODE_BLOCK_SAMPLES = 1 << 22  # samples x channels read per block (16 MiB of float32)
MULTIPART_SLACK = 64 * 2**10  # form boundaries and headers around the file in a multipart body
INSTALL_HINT = "the server needs the serve extra: pip install 'emoboost[serve]'"
log = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload the server refuses: HTTP ``status`` and a one-line message naming the upload."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _safe_name(filename: str | None) -> str:
    """The upload's base name for messages and the result's ``path`` (never used to open anything).

    Only the part after the last ``/`` or ``\\``; control and format characters (NUL, escapes, C1
    controls, bidirectional overrides, zero-width marks) removed, whitespace runs made one space, at most
    :data:`MAX_NAME_CHARS` characters; ``upload`` when nothing is left (or only dots)."""
    name = "".join(ch for ch in filename or "" if unicodedata.category(ch)[0] != "C")
    name = " ".join(re.split(r"[/\\]", name)[-1].split())[:MAX_NAME_CHARS].strip()
    return name if name.strip(".") else "upload"


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


def readable_formats() -> str:
    import soundfile as sf

    common = ["WAV", "FLAC", "OGG", "MP3", "AIFF"]
    have = set(sf.available_formats())
    return ", ".join(f if f != "OGG" else "OGG (Vorbis/Opus)" for f in common if f in have)


def decode_upload(
    stream,
    filename: str | None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, str]:
    """Read an uploaded file object into a 16 kHz mono waveform, or raise :class:`UploadError`.

    The bytes go to a temporary file that is always removed; the duration and sample rate are checked
    from the header before anything is decoded, so a long upload costs no decoding. Status codes: 400
    empty, 413 too large or too long, 415 not a format libsndfile reads, 422 readable but broken
    (truncated, NaN samples, amplitude out of range, an absurd sample rate, no samples).
    """
    name = _safe_name(filename)
    suffix = "".join(re.findall(r"[A-Za-z0-9]", Path(name).suffix))[:8]
    fd, tmp = tempfile.mkstemp(prefix="emoboost-upload-", suffix=f".{suffix}" if suffix else "")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadError(413, f"{name}: upload is over the server's limit of {_mib(max_bytes)}")
                out.write(chunk)
        if size == 0:
            raise UploadError(400, f"{name}: the upload is empty (0 bytes)")
        try:
            duration, rate, channels = audio_info(tmp)  # the header: a rate outside 4-384 kHz is refused here
        except AudioError as e:
            if e.problem.startswith("unreadable"):
                raise UploadError(415, f"{name}: not an audio file this server can decode "
                                       f"(readable: {readable_formats()})") from None
            raise UploadError(422, f"{name}: {e.problem}") from None
        if duration > max_seconds:
            raise UploadError(413, f"{name}: {duration:.1f} s of audio is over the server's limit of "
                                   f"{max_seconds:g} s")
        try:
            wav = _decode(tmp, sample_rate, rate * channels)
        except AudioError as e:
            raise UploadError(422, f"{name}: {e.problem.replace(tmp, name)}") from None
        return wav, name
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _decode(path: str, sample_rate: int, samples_per_second: int) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate``, decoded block by block.

    A few KB of FLAC can hold minutes of 8-channel 384 kHz silence, gigabytes once decoded at once; read
    in blocks of :data:`DECODE_BLOCK_SAMPLES`, memory is the output (bounded by ``max_seconds``) plus one
    block. :func:`emoboost.audio.stream_audio` equals :func:`~emoboost.audio.load_audio` (to float32
    rounding when resampled) and checks every block's samples the same way."""
    block_seconds = min(30.0, DECODE_BLOCK_SAMPLES / max(samples_per_second, 1))
    blocks = list(stream_audio(path, sample_rate, block_seconds=block_seconds))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _model_info(predictor) -> dict[str, Any]:
    """What /health says about the model: kind, backend, method, encoder name and size, chosen key by key.

    A bundle also holds the head's weights and normalisation statistics, the training run's folder and
    the encoder's path; a health check needs none of them, and they are nobody else's business."""
    bundle = getattr(predictor, "bundle", None)
    if bundle is None:
        return {}
    if isinstance(bundle, dict):  # a bundle.json as read
        models = bundle.get("models")
        n = len(models) if isinstance(models, list) and models else 1
        kind = "final" if bundle.get("kind") == "final" else ("ensemble" if n > 1 else "model")
        method, up = bundle.get("method"), bundle.get("upstream")
    else:  # an emoboost.inference.bundle.Bundle
        n, kind, method, up = max(1, len(bundle.models)), bundle.kind, bundle.method, bundle.upstream
    info: dict[str, Any] = {"kind": kind, "n_models": n}
    backend = getattr(getattr(predictor, "backend", None), "name", None)
    if isinstance(backend, str):
        info["backend"] = backend
    if isinstance(method, str):
        info["method"] = method
    if isinstance(up, dict):
        spec, fingerprint = up.get("spec"), up.get("fingerprint")
        if isinstance(spec, str) and spec and not re.search(r"[/\\~:]", spec):
            info["encoder"] = spec  # a known name or hub id without a path; else the content fingerprint
        elif isinstance(fingerprint, str) and not re.search(r"[/\\~:]", fingerprint):
            info["encoder"] = fingerprint
    return info


def check_settings(max_seconds: float = DEFAULT_MAX_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES,
                   max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_queue: int = DEFAULT_MAX_QUEUE,
                   port: int | None = None) -> None:
    """Refuse settings the server cannot honour, before anything starts: one ``ValueError`` line naming the flag."""
    if not (isinstance(max_seconds, (int, float)) and math.isfinite(max_seconds) and max_seconds > 0):
        raise ValueError(f"--max-seconds must be a finite number of seconds above 0, got {max_seconds}")
    if not (isinstance(max_bytes, (int, float)) and math.isfinite(max_bytes) and max_bytes >= 1):
        raise ValueError(f"--max-mb must be a finite size above 0, got {max_bytes / 2**20:g} MiB")
    if not (isinstance(max_concurrent, int) and max_concurrent >= 1):
        raise ValueError(f"--max-concurrent must be an integer >= 1, got {max_concurrent}")
    if not (isinstance(max_queue, int) and max_queue >= 0):
        raise ValueError(f"--max-queue must be an integer >= 0, got {max_queue}")
    if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
        raise ValueError(f"--port must be an integer from 1 to 65535, got {port}")


class Busy(Exception):
    """The server is full: answer 503 with ``Retry-After: seconds``."""

    def __init__(self, seconds: int):
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


class Admission:
    """At most ``limit`` requests inside and ``queue`` more waiting; any other is refused at once.

    Refusing beyond a small queue (instead of letting every connection wait its turn while holding its
    upload and decoded audio) is what bounds memory whatever the number of clients. ``Retry-After`` is
    the recent time per request times the requests ahead, between 1 and 60 s."""

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT, queue: int = DEFAULT_MAX_QUEUE):
        self.limit, self.queue = limit, queue
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.inside = 0  # admitted: running or waiting for a slot
        self._service_s = 1.0  # moving average of the time a request holds a slot

    def retry_after(self) -> int:
        ahead = max(self.inside - self.limit + 1, 1)
        return int(min(60, max(1, math.ceil(self._service_s * ahead / self.limit))))

    @contextmanager
    def enter(self):
        """Hold a slot for the ``with`` block, waiting in the queue if there is room; else raise :class:`Busy`."""
        with self._lock:
            if self.inside >= self.limit + self.queue:
                raise Busy(self.retry_after())
            self.inside += 1
        try:
            with self._slots:
                t0 = time.perf_counter()
                try:
                    yield
                finally:
                    dt = time.perf_counter() - t0
                    with self._lock:
                        self._service_s = 0.8 * self._service_s + 0.2 * dt
        finally:
            with self._lock:
                self.inside -= 1


NON_FINITE = ("{name}: the model's answer for this audio is not finite (NaN or infinite probabilities); the "
              "audio is outside what the model can label")


def _finite(obj: Any) -> bool:
    """True when no float anywhere in a JSON-like answer is NaN or infinite."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite(v) for v in obj)
    return True


def page_html() -> str:
    """The self-contained upload/record page (no external scripts, styles or fonts)."""
    return resources.files("emoboost").joinpath("inference", "static", "index.html").read_text(encoding="utf-8")


def create_app(predictor, max_seconds: float = DEFAULT_MAX_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES,
               max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_queue: int = DEFAULT_MAX_QUEUE, speakers=None):
    """A FastAPI app serving ``predictor``; see the module docstring for the endpoints, errors and limits."""
    try:
        from fastapi import FastAPI, File, Query, Request, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse, Response
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e

    check_settings(max_seconds, max_bytes, max_concurrent, max_queue)
    max_bytes = int(max_bytes)
    classes = list(predictor.classes)
    model = _model_info(predictor)
    lock = threading.Lock()
    admission = Admission(max_concurrent, max_queue)
    page = page_html()
    adapts = speakers is not None or _adapts(predictor)
    app = FastAPI(title="emoboost", description="Speech emotion recognition", docs_url="/docs", redoc_url=None)
    stats: dict[str, Any] = {"requests": 0, "ok": 0, "errors": 0, "busy": 0, "by_status": {}}
    stats_lock = threading.Lock()
    started = time.time()

    def count(status: int) -> None:
        with stats_lock:
            stats["requests"] += 1
            stats["ok" if status < 400 else "busy" if status == 503 else "errors"] += 1
            stats["by_status"][str(status)] = stats["by_status"].get(str(status), 0) + 1

    def refuse(status: int, detail: str, headers: dict[str, str] | None = None):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.middleware("http")
    async def count_and_gate(request: Request, call_next):
        """Every response to /predict is counted, whatever produced it (a refusal here, the handler,
        FastAPI's own validation, or an exception nobody caught)."""
        if request.url.path not in ("/predict", "/enrol"):
            return await call_next(request)
        # Refuse before the multipart parser spools the body to disk.
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > max_bytes + MULTIPART_SLACK:
            response = refuse(413, f"upload of {_mib(int(length))} is over the server's limit of {_mib(max_bytes)}")
        else:
            try:
                response = await call_next(request)
            except Exception as e:  # noqa: BLE001 - one line to the client, the traceback to the log
                log.exception("request to %s failed", request.url.path)
                response = refuse(500, f"internal error ({type(e).__name__}); the server keeps serving")
        count(response.status_code)
        return response

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/health")
    def health():
        with stats_lock:
            counts = {k: dict(v) if isinstance(v, dict) else v for k, v in stats.items()}
        return {"status": "ok", "classes": classes, "model": model,
                "speakers": {"adapts": adapts, "count": len(speakers.names()) if speakers is not None else 0},
                "limits": {"max_seconds": max_seconds, "max_bytes": max_bytes,
                           "max_concurrent": max_concurrent, "max_queue": max_queue},
                **counts, "in_flight": admission.inside, "uptime_s": round(time.time() - started, 1)}

    def speaker_store():
        """The model's speaker profiles (made on first use: a model that cannot adapt says so in one line)."""
        nonlocal speakers
        if speakers is None:
            from emoboost.inference.profiles import SpeakerStore

            speakers = SpeakerStore(predictor)
        return speakers

    def classify(file, timeline: bool, speaker: str | None, learn: bool, enrol: bool):
        """An upload decoded and classified (adapted to ``speaker``; ``learn``: then added to its profile)."""
        if file is None:
            return refuse(400, "no file in the request: send the audio as multipart form field 'file'")
        name = _safe_name(file.filename)
        try:
            if speaker is None and (learn or enrol):
                return refuse(400, f"{name}: name the speaker (?speaker=NAME) whose profile the clip is added to")
            if speaker is not None:  # refused before any decoding: a model that cannot adapt, a bad or unknown name
                speaker_store().get(speaker, create=learn or enrol)
            with admission.enter():  # decoding and classifying both happen inside: memory is bounded
                wav, name = decode_upload(file.file, file.filename, max_seconds, max_bytes)
                with lock:
                    if speaker is None:
                        result = predictor.predict_wav(wav, name, timeline, vad=None).to_dict()
                    else:
                        from emoboost.inference.profiles import predict_heard

                        before = speaker_store().get(speaker, create=True)
                        pred, terms, n = predict_heard(predictor, wav, name, None if enrol else before, timeline)
                        after = speaker_store().add(speaker, terms, n) if learn or enrol else before
                        result = {"speaker": speaker, "clips": after.clips, "added": n} if enrol else \
                            {**pred.to_dict(), "speaker": {"name": speaker, "clips_heard": before.clips,
                                                           "clips": after.clips}}
        except Busy as e:
            return refuse(503, f"{name}: the server is busy ({admission.limit} running, {admission.queue} "
                               f"queued); retry in {e.seconds} s", {"Retry-After": str(e.seconds)})
        except UploadError as e:
            return refuse(e.status, e.message)
        except AudioError as e:  # valid audio the model cannot label (too short, NaN after decoding)
            return refuse(422, f"{name}: {e.problem}")
        except NonFiniteAnswer:  # the engine's own check of the answer (its message names the model's folder)
            log.warning("non-finite model output for %s", name)
            return refuse(422, NON_FINITE.format(name=name))
        except UnknownSpeaker as e:
            return refuse(404, f"{e.args[0]}; enrol it first (POST /enrol?speaker={speaker}) or start a live session "
                               f"(POST /predict?speaker={speaker}&learn=true)")
        except SpeakerLimit as e:
            return refuse(409, str(e))
        except ValueError as e:  # a bad speaker name, a model that cannot adapt, a profile of another model
            if speaker is None:
                log.exception("prediction failed for %s", name)
                return refuse(500, f"{name}: prediction failed ({type(e).__name__}: {e})".splitlines()[0])
            return refuse(400, str(e).splitlines()[0])
        except Exception as e:  # the model failed on valid audio: say so, keep serving
            log.exception("prediction failed for %s", name)
            return refuse(500, f"{name}: prediction failed ({type(e).__name__}: {e})".splitlines()[0])
        if enrol:
            return result
        if not _finite(result):
            log.warning("non-finite model output for %s", name)
            return refuse(422, NON_FINITE.format(name=name))
        result["duration"] = round(len(wav) / SAMPLE_RATE, 3)
        if timeline:
            result.setdefault("timeline", [])
        return result

    @app.post("/predict")
    def predict(file: Annotated[UploadFile | None, File(description="audio file (WAV, FLAC, OGG, MP3, ...)")] = None,
                timeline: Annotated[bool, Query(description="add per-segment start, end, label, probabilities")] = False,
                speaker: Annotated[str | None, Query(description="adapt to this speaker's profile")] = None,
                learn: Annotated[bool, Query(description="then add the clip to it (a live session)")] = False):
        return classify(file, timeline, speaker, learn, enrol=False)

    @app.post("/enrol")
    def enrol(file: Annotated[UploadFile | None, File(description="a clip of the speaker")] = None,
              speaker: Annotated[str | None, Query(description="the speaker whose profile the clip is added to")] = None):
        return classify(file, False, speaker, True, enrol=True)

    @app.get("/speakers")
    def list_speakers():
        try:
            return {"speakers": speaker_store().names(), "max_speakers": speaker_store().max_speakers}
        except ValueError as e:
            return refuse(400, str(e))

    @app.delete("/speakers/{name}")
    def delete_speaker(name: str):
        try:
            speaker_store().delete(name)
        except UnknownSpeaker as e:
            return refuse(404, e.args[0])
        except ValueError as e:
            return refuse(400, str(e))
        return {"deleted": name}

    return app


def _adapts(predictor) -> bool:
    """Whether the model takes speaker profiles (a pooled model trained with adapt=...)."""
    try:
        predictor.backend.adapters()
        return True
    except (AttributeError, ValueError):
        return False


def run(bundle_path: str | Path, host: str = "127.0.0.1", port: int = 8000, upstream: str | None = None,
        max_seconds: float = DEFAULT_MAX_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES, log_level: str = "info",
        device: str = "cpu", max_concurrent: int = DEFAULT_MAX_CONCURRENT, max_queue: int = DEFAULT_MAX_QUEUE,
        backend: str = "auto", profiles: str | Path | None = None, max_speakers: int | None = None) -> None:
    """Check the settings, load a model (run directory, final model or ONNX export) and serve it with uvicorn
    until interrupted."""
    check_settings(max_seconds, max_bytes, max_concurrent, max_queue, port)  # before the model is loaded
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    from emoboost.inference.engine import Engine

    predictor = Engine.load(bundle_path, upstream=upstream, device=device, backend=backend)
    speakers = None
    if profiles is not None or max_speakers is not None:  # speakers persisted in a folder, or bounded otherwise
        from emoboost.inference.profiles import DEFAULT_MAX_SPEAKERS, SpeakerStore

        speakers = SpeakerStore(predictor, profiles, max_speakers or DEFAULT_MAX_SPEAKERS)
    app = create_app(predictor, max_seconds=max_seconds, max_bytes=int(max_bytes), max_concurrent=max_concurrent,
                     max_queue=max_queue, speakers=speakers)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
