"""``emoboost enrol MODEL --speaker NAME CLIPS... --out PROFILE``: a speaker profile from unlabelled clips."""

from __future__ import annotations

import sys
from pathlib import Path

from emoboost.cli.predict import add_model_args, load_engine


def add_args(parser):
    """Arguments of ``emoboost enrol`` (registered lazily by :mod:`emoboost.cli`)."""
    import argparse

    parser.add_argument("model", help="a final model, run directory or ONNX export trained with -p adapt=loo, "
                                      "enrol:K or online")
    parser.add_argument("inputs", nargs="+", metavar="CLIP",
                        help="unlabelled clips of the speaker: files, folders or .txt/.lst lists (as for predict)")
    parser.add_argument("--speaker", required=True, help="the speaker's name (1-64 letters, digits or _.@+-)")
    parser.add_argument("--out", required=True, metavar="PROFILE",
                        help="the profile file to write (safetensors; written atomically)")
    parser.add_argument("--append", action="store_true",
                        help="add the clips to the profile already in --out (same speaker and model)")
    parser.add_argument("--vad", action=argparse.BooleanOptionalAction, default=None,
                        help="as for predict: a clip longer than 30 s adds each speech window found by VAD")
    add_model_args(parser)
    parser.epilog = ("Use the profile with: emoboost predict MODEL FILES --profile PROFILE, emoboost.load(MODEL)"
                     ".predict(x, speaker=PROFILE), or the server. A bad clip is one line on stderr, the others are "
                     "still enrolled; the exit code is then 1.")
    return parser


def main(args) -> int:
    from emoboost.audio import AudioError
    from emoboost.cli import error_line
    from emoboost.inference.inputs import expand_inputs
    from emoboost.inference.profiles import SpeakerProfile, check_name, model_key, predict_heard

    check_name(args.speaker)
    files, bad = expand_inputs(args.inputs)
    engine = load_engine(args)
    out = Path(args.out)
    if args.append and out.is_file():
        sp = SpeakerProfile.load(out).check(engine, str(out))
        if sp.speaker != args.speaker:
            raise ValueError(f"{out}: holds speaker {sp.speaker!r}, not {args.speaker!r}")
    else:
        sp = SpeakerProfile(args.speaker, model_key(engine))
    before = sp.clips
    for f in files:
        try:
            _, terms, n = predict_heard(engine, f, str(f), None, vad=args.vad)
        except AudioError as e:
            bad.append((e.path, e.problem))
            continue
        except (OSError, ValueError, RuntimeError) as e:
            bad.append((str(f), error_line(e)))
            continue
        sp = sp.learn(terms, n)
    for path, problem in bad:
        print(f"error: {path}: {problem}", file=sys.stderr)
    if sp.clips == before:
        raise ValueError(f"no clip of {args.speaker!r} could be used (silence and unreadable files add nothing); "
                         f"{out} is not written")
    sp.save(out)
    print(f"{out}: speaker {sp.speaker}, {sp.clips} clips ({sp.clips - before} added from {len(files)} file(s))")
    return 1 if bad else 0
