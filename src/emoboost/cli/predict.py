"""``emoboost predict MODEL INPUT...``: label files, folders and lists; bad inputs listed, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

from emoboost.audio import SILENCE_DB, AudioError
from emoboost.inference.engine import MIN_DURATION, VAD_AUTO_SECONDS, Engine
from emoboost.inference.inputs import expand_inputs


def add_model_args(parser) -> None:
    """Where and how the model runs (``predict`` and ``serve``)."""
    parser.add_argument("--upstream", help="override where the encoder is loaded from (must match its fingerprint)")
    parser.add_argument("--device", default="cpu", help="run directory / final model: encoder and torch models on "
                                                        "cpu (default), auto, cuda, cuda:N or mps")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                        help="auto (default): onnxruntime when the model has an ONNX form (an export, or a final "
                             "model trained with onnxruntime installed) and onnxruntime is installed, else torch")


def add_args(parser):
    """Arguments of ``emoboost predict`` (registered lazily by :mod:`emoboost.cli`)."""
    import argparse

    parser.add_argument("model", help="run directory (its fold models are averaged: an ensemble), final model "
                                      "bundle, or ONNX export directory (run with onnxruntime)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="audio files, folders (every audio file below them: wav, flac, ogg, mp3, aiff, ...) "
                             "or .txt/.lst files listing paths (one per line, relative to the list's folder)")
    parser.add_argument("--vad", action=argparse.BooleanOptionalAction, default=None,
                        help=f"classify only speech found by Silero VAD, window by window, and label the file by "
                             f"the duration-weighted windows (silence is never classified). Default: on for files "
                             f"longer than {VAD_AUTO_SECONDS:g} s, off for shorter ones (one utterance, classified "
                             f"whole as in training)")
    parser.add_argument("--timeline", action="store_true",
                        help="per-window start, end, label and probabilities (VAD windows, else 3 s segments)")
    parser.add_argument("--format", choices=["text", "json", "csv"], default="text", help="what stdout shows")
    parser.add_argument("--out", metavar="FILE", help="also write the results to FILE.csv or FILE.json (atomically; "
                                                       "JSON adds the model and the failed inputs)")
    parser.add_argument("--plot", metavar="DIR_OR_PNG",
                        help="timeline plot: a .png path for one input, else a folder (<name>.timeline.png per file)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--profile", metavar="PROFILE", help="adapt every file to this speaker profile (emoboost enrol); "
                                                          "models trained with -p adapt=... only")
    who.add_argument("--speaker-regex", metavar="REGEX",
                     help="adapt each file to the OTHER files of its speaker (never its own): the speaker is the "
                          "regex's group 'speaker', else group 1, else the match, in the file name; reads each "
                          "file twice, results grouped by speaker")
    add_model_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.epilog = (f"Clips shorter than {MIN_DURATION:g} s are refused; digital silence (peak below "
                     f"{SILENCE_DB:g} dBFS) is reported as silent with no label. A bad input is reported on "
                     f"stderr (one line) and the others still run; the exit code is then 1.")
    return parser


def load_engine(args) -> Engine:
    """MODEL with the flags of :func:`add_model_args` (onnxruntime threads: the command line's default)."""
    from emoboost.cli.threads import default_threads

    return Engine.load(args.model, upstream=args.upstream, backend=getattr(args, "backend", "auto"),
                       threads=getattr(args, "threads", None) or default_threads(), device=getattr(args, "device", "cpu"))


def _plot_target(plot: str, f: Path, used: set[Path]) -> Path:
    if plot.lower().endswith(".png"):
        return Path(plot)
    target = Path(plot) / f"{f.stem}.timeline.png"
    k = 1
    while target in used:
        k += 1
        target = Path(plot) / f"{f.stem}-{k}.timeline.png"
    used.add(target)
    return target


def _file_row(d: dict, classes: list[str]) -> dict:
    row = {"path": d["path"], "label": d["label"] or ""}
    row.update({f"p_{c}": d["probabilities"].get(c, "") for c in classes})
    row.update(silent=d["silent"], duration=d.get("duration", ""), speech_seconds=d.get("speech_seconds", ""),
               warnings=" | ".join(d.get("warnings", [])))
    who = d.get("speaker") or {}  # --profile / --speaker-regex: the speaker and how many clips it was adapted to
    row.update(speaker=who.get("name", ""), speaker_clips=who.get("clips_heard", ""))
    return row


def _file_fields(classes: list[str]) -> list[str]:
    return ["path", "label", *[f"p_{c}" for c in classes], "silent", "duration", "speech_seconds", "warnings",
            "speaker", "speaker_clips"]


def _text_line(d: dict) -> str:
    if d["silent"]:
        return f"{d['path']}\t(silent)\tpeak below {SILENCE_DB:g} dBFS: not classified"
    if d["label"] is None:
        return f"{d['path']}\t(no speech)\tVAD found no speech in {d.get('duration', 0):.1f} s"
    probs = "  ".join(f"{c}={p:.3f}" for c, p in sorted(d["probabilities"].items(), key=lambda kv: -kv[1]))
    vad = f"\tspeech {d['speech_seconds']:.1f} of {d['duration']:.1f} s" if d.get("vad") else ""
    who = f"\tspeaker {d['speaker']['name']} ({d['speaker']['clips_heard']} clips)" if d.get("speaker") else ""
    return f"{d['path']}\t{d['label']}\t{probs}{vad}{who}"


def main(args) -> int:
    """``emoboost predict``: every input file labelled; bad ones reported and counted, never fatal."""
    import csv
    import io
    import sys

    from tqdm.auto import tqdm

    from emoboost.cli import error_line
    from emoboost.utils import atomic_write_text

    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: the file name must end in .csv or .json")
    files, bad = expand_inputs(args.inputs)
    if args.plot and args.plot.lower().endswith(".png") and len(files) > 1:
        raise ValueError(f"--plot {args.plot}: one PNG takes one input, but {len(files)} files were given; "
                         f"pass a folder")
    limit_heap_growth()
    pred = load_engine(args)  # a broken bundle or a model/encoder mismatch is one error, not one per file
    info = pred.describe()
    classes = list(pred.classes)
    print(("# " if args.format == "text" else "") + describe_line(info),
          file=sys.stdout if args.format == "text" else sys.stderr, flush=True)

    def report(path: str, problem: str) -> None:
        bad.append((path, problem))
        tqdm.write(f"error: {path}: {problem}", file=sys.stderr)

    for p, problem in list(bad):
        tqdm.write(f"error: {p}: {problem}", file=sys.stderr)
    writer = csv.DictWriter(sys.stdout, fieldnames=csv_fields(classes, args.timeline), lineterminator="\n") \
        if args.format == "csv" else None
    if writer is not None:
        writer.writeheader()
    rows: list[dict] = []
    plotted: set[Path] = set()
    bar = tqdm(_speakers(pred, files, args, report), total=len(files), desc="predict", unit="file", file=sys.stderr,
               disable=True if args.no_progress else None)
    for f, adapt, who in bar:
        try:
            r = pred.predict_file(f, timeline=args.timeline or bool(args.plot), vad=args.vad, adapt=adapt)
            if args.plot:
                from emoboost.inference.timeline import plot_timeline

                plot_timeline(r.timeline, classes, _plot_target(args.plot, f, plotted), duration=r.duration,
                              title=f"{f.name}: {r.label or ('silent' if r.silent else 'no speech')}")
        except AudioError as e:
            report(e.path, e.problem)
            continue
        except (OSError, ValueError, RuntimeError) as e:
            line = error_line(e)  # the engine's lines often name the file already: not twice
            report(str(f), line.removeprefix(f"{f}: "))
            continue
        if not args.timeline:
            r.timeline = []
        for w in r.warnings:  # labelled as usual; the user is told what looks wrong with the audio
            tqdm.write(f"warning: {w}", file=sys.stderr)
        d = r.to_dict() | ({"speaker": who} if who else {})
        rows.append(d)
        if writer is not None:
            writer.writerows(_csv_rows(d, classes, args.timeline))
            sys.stdout.flush()
        elif args.format == "text":
            lines = [_text_line(d)] + [f"  {t['start']:8.2f}-{t['end']:8.2f}s  {t['label']}" for t in r.timeline]
            tqdm.write("\n".join(lines), file=sys.stdout)
    bar.close()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() == ".json":
            doc = {"model": info, "settings": {"vad": args.vad, "vad_auto_seconds": VAD_AUTO_SECONDS,
                                               "min_duration": MIN_DURATION, "silence_dbfs": SILENCE_DB},
                   "results": rows, "errors": [{"path": p, "problem": m} for p, m in bad]}
            atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
        else:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=csv_fields(classes, args.timeline), lineterminator="\n")
            w.writeheader()
            for d in rows:
                w.writerows(_csv_rows(d, classes, args.timeline))
            atomic_write_text(out, buf.getvalue())
    if bad:
        print(f"emoboost: {len(bad)} input(s) failed, {len(rows)} labelled", file=sys.stderr)
    return 1 if bad else 0


def _speakers(engine: Engine, files: list, args, report):
    """(file, the speaker adaptation it gets, speaker info) for every file: none, --profile, or --speaker-regex."""
    if args.speaker_regex:
        from emoboost.inference.profiles import leave_one_out

        yield from leave_one_out(engine, files, args.speaker_regex, args.vad, report)
        return
    adapt, who = None, None
    if args.profile:
        from emoboost.inference.profiles import SpeakerProfile, adapt_to

        sp = SpeakerProfile.load(args.profile).check(engine, args.profile)
        adapt, who = adapt_to(engine, sp), {"name": sp.speaker, "clips_heard": sp.clips}
    for f in files:
        yield f, adapt, who


def csv_fields(classes: list[str], timeline: bool) -> list[str]:
    """CSV columns: one row per timeline window (``path,start,end,label,p_<class>...``) or per file."""
    from emoboost.inference.timeline import csv_fields as timeline_fields

    return timeline_fields(classes) if timeline else _file_fields(classes)


def _csv_rows(d: dict, classes: list[str], timeline: bool) -> list[dict]:
    from emoboost.inference.timeline import to_csv_rows

    return to_csv_rows(d.get("timeline", []), classes, d["path"]) if timeline else [_file_row(d, classes)]


def limit_heap_growth(threshold: int = 4 << 20) -> bool:
    """glibc: serve allocations of ``threshold`` bytes or more by mmap, returned to the OS when freed.

    glibc raises its mmap threshold after the first large free, so the log-mel and encoder temporaries
    of every 30 s window (tens of MB, allocated and freed per window) then come from the heap, which
    fragments: without VAD, peak RSS crept ~100 MB above a 10 s file's over the first minutes of a long
    file. A fixed 4 MiB threshold halves that (+55 MB) for ~10 % more CPU time (page faults of fresh
    mappings); 1 MiB saves a few MB more but costs ~25 % (benchmarks/long_audio.py). Process-wide, so
    only the command line calls it; a no-op off Linux/glibc or when ``MALLOC_MMAP_THRESHOLD_`` is set.
    Returns whether it took effect.
    """
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def describe_line(info: dict) -> str:
    what = {"ensemble": f"cross-validation run: ensemble of {info['models']} fold models (posteriors averaged)",
            "final": "final model trained on all speakers", "model": "one model",
            "onnx": "ONNX export (onnxruntime)"}.get(info["kind"], info["kind"])
    backend = f"; {info['backend']}" if info.get("backend") and info["kind"] != "onnx" else ""
    line = f"model: {info['path']} ({what}; {len(info['classes'])} classes{backend})"
    return f"{line}: {info['summary']}" if info.get("summary") else line
