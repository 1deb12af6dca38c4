"""HTTP server for a trained model: ``POST /predict``, ``GET /health`` and a page at ``GET /``.

:func:`create_app` wraps any predictor with ``.classes`` and ``.predict_wav(wav, path, timeline, vad=)``
(:class:`emoboost.inference.engine.Engine`, so an upload gets exactly what ``emoboost predict`` gives the
same file: VAD above 30 s, silence flagged, too short refused), and the HTTP layer is tested with small
stand-ins that never depend on how a model computes. Uploads are copied to a temporary file (removed whatever happens) and
decoded by :func:`emoboost.audio.load_audio`, so the server accepts and refuses exactly what the
command line does. Every bad upload gets a 4xx JSON ``{"detail": "<file>: <problem>"}`` and the server
keeps serving; one prediction runs at a time (models are not assumed thread-safe, and on a small CPU
parallel requests would only compete for the same cores).

fastapi / uvicorn / python-multipart are the ``serve`` extra and are imported only when a server is built.
"""

import logging
import os
import re
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from emoboost.audio import SAMPLE_RATE, AudioError, audio_info, load_audio

DEFAULT_MAX_SECONDS = 600.0
DEFAULT_MAX_BYTES = 100 * 2**20
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
    """The upload's base name for messages and the result's ``path`` (never used to open anything)."""
    name = Path((filename or "").replace("\\", "/")).name.strip()
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)[:200]
    return name or "upload"


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

    The bytes go to a temporary file that is always removed; the duration is checked from the header
    before anything is decoded, so a long upload costs no decoding. Status codes: 400 empty,
    413 too large or too long, 415 not a format libsndfile reads, 422 readable but broken (truncated,
    NaN samples, no samples).
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
            duration, _, _ = audio_info(tmp)
        except AudioError as e:
            if e.problem.startswith("unreadable"):
                raise UploadError(415, f"{name}: not an audio file this server can decode "
                                       f"(readable: {readable_formats()})") from None
            raise UploadError(422, f"{name}: {e.problem}") from None
        if duration > max_seconds:
            raise UploadError(413, f"{name}: {duration:.1f} s of audio is over the server's limit of "
                                   f"{max_seconds:g} s")
        try:
            wav = load_audio(tmp, sample_rate)
        except AudioError as e:
            raise UploadError(422, f"{name}: {e.problem.replace(tmp, name)}") from None
        return wav, name
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _model_info(predictor) -> dict[str, Any]:
    """What /health says about the model: its kind, backend, size and classes (no paths, no weights)."""
    describe = getattr(predictor, "describe", None)
    if not callable(describe):
        return {}
    info = describe()
    return {k: info[k] for k in ("kind", "backend", "models", "classes") if k in info}


def page_html() -> str:
    """The self-contained upload/record page (no external scripts, styles or fonts)."""
    return resources.files("emoboost").joinpath("inference", "static", "index.html").read_text(encoding="utf-8")


def create_app(predictor, max_seconds: float = DEFAULT_MAX_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES):
    """A FastAPI app serving ``predictor``; see the module docstring for the endpoints and errors."""
    try:
        from fastapi import FastAPI, File, Query, Request, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse, Response
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e

    classes = list(predictor.classes)
    lock = threading.Lock()
    page = page_html()
    app = FastAPI(title="emoboost", description="Speech emotion recognition", docs_url="/docs", redoc_url=None)
    stats = {"requests": 0, "errors": 0, "started": time.time()}
    stats_lock = threading.Lock()

    def count(key: str) -> None:
        with stats_lock:
            stats[key] += 1

    @app.middleware("http")
    async def refuse_oversized(request: Request, call_next):
        # Refuse before the multipart parser spools the body to disk.
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > max_bytes + MULTIPART_SLACK:
            count("requests")
            count("errors")
            return JSONResponse({"detail": f"upload of {_mib(int(length))} is over the server's limit "
                                           f"of {_mib(max_bytes)}"}, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    @app.get("/health")
    def health():
        return {"status": "ok", "classes": classes, "sample_rate": SAMPLE_RATE,
                "limits": {"max_seconds": max_seconds, "max_bytes": max_bytes},
                "model": _model_info(predictor),
                "requests": stats["requests"], "errors": stats["errors"],
                "uptime_s": round(time.time() - stats["started"], 1)}

    @app.post("/predict")
    def predict(file: Annotated[UploadFile | None, File(description="audio file (WAV, FLAC, OGG, MP3, ...)")] = None,
                timeline: Annotated[bool, Query(description="add per-segment start, end, label, probabilities")] = False):
        count("requests")
        try:
            if file is None:
                raise UploadError(400, "no file in the request: send the audio as multipart form field 'file'")
            wav, name = decode_upload(file.file, file.filename, max_seconds, max_bytes)
        except UploadError as e:
            count("errors")
            return JSONResponse({"detail": e.message}, status_code=e.status)
        try:
            with lock:
                result = predictor.predict_wav(wav, name, timeline, vad=None).to_dict()
        except AudioError as e:  # valid audio the model cannot label (too short, NaN after decoding)
            count("errors")
            return JSONResponse({"detail": f"{name}: {e.problem}"}, status_code=422)
        except Exception as e:  # the model failed on valid audio: say so, keep serving
            count("errors")
            log.exception("prediction failed for %s", name)
            return JSONResponse({"detail": f"{name}: prediction failed ({type(e).__name__}: {e})"}, status_code=500)
        result["duration"] = round(len(wav) / SAMPLE_RATE, 3)
        if timeline:
            result.setdefault("timeline", [])
        return result

    return app


def run(bundle_path: str | Path, host: str = "127.0.0.1", port: int = 8000, upstream: str | None = None,
        max_seconds: float = DEFAULT_MAX_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES, log_level: str = "info",
        device: str = "cpu", backend: str = "auto") -> None:
    """Load a model (run directory, final model or ONNX export) and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    from emoboost.inference.engine import Engine

    predictor = Engine.load(bundle_path, upstream=upstream, device=device, backend=backend)
    app = create_app(predictor, max_seconds=max_seconds, max_bytes=max_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
