"""emoboost: speech emotion recognition on self-supervised speech representations (one subcommand per step).

Heavy modules are imported inside each command so ``emoboost --help`` is instant and one missing
optional dependency never breaks unrelated commands: building the parser imports neither torch,
transformers nor scikit-learn (the commands whose argument lists live in heavy modules register
them only when that command is the one being run). Errors end in one line on stderr and a
non-zero exit, never a traceback (``-v`` shows it); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable

from emoboost.cli.catalog import cmd_methods, cmd_upstreams
from emoboost.cli.data import cmd_data
from emoboost.cli.run import _add_run_args, cmd_run
from emoboost.cli.threads import _THREAD_ENV, default_threads, set_threads


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="emoboost", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--threads", type=int, help="CPU threads for torch and the BLAS (default: 1 on machines with <= 2 cores, "
                         "else the libraries' choice; also the config key threads:); at most the usable cores")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_LazyParser)

    p = sub.add_parser("run", help="train + evaluate one method with speaker-independent CV, write a report")
    _add_run_args(p)
    p.add_argument("--sweep", action="append", help="method parameter sweep, e.g. layer=0,2,4,6,weighted")
    p.set_defaults(func=cmd_run)

    _lazy(sub, "predict", "label audio files, folders or lists with a run, final model or ONNX export "
          "(VAD for long files)", "emoboost.cli.predict", "add_args", "main")
    _lazy(sub, "enrol", "a speaker profile from unlabelled clips, for models trained with -p adapt=...",
          "emoboost.cli.enrol", "add_args", "main")

    p = sub.add_parser("methods", help="the methods, or one method's parameters (-p NAME=VALUE) with defaults")
    p.add_argument("name", nargs="?", help="a method (linear, logreg, msemoboost, ...)")
    p.add_argument("--long", action="store_true", help="also print the method module's description")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("upstreams", help="the encoders known by name and where each would load from (no download)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_upstreams)

    p = sub.add_parser("data", help="corpora: list, download, prepare manifests")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    dsub.add_parser("list")
    d = dsub.add_parser("download", help="fetch a corpus from its official public URL")
    d.add_argument("corpus")
    d.add_argument("--dest")
    d.add_argument("--url", help="override the download URL (mirrors); then any letters-and-digits name works")
    d.add_argument("--force", action="store_true", help="replace an existing copy")
    d.add_argument("--max-size", type=float, metavar="GB",
                   help="refuse archives that expand to more than this (default 64 GiB)")
    d.add_argument("--max-ratio", type=float, help="refuse archives that expand more than this many times (default 100)")
    d = dsub.add_parser("prepare", help="scan a corpus folder into a manifest")
    d.add_argument("corpus")
    d.add_argument("root")
    d.add_argument("--out", required=True, help="manifest path (.jsonl or .csv)")
    d.add_argument("--speaker-regex", help="folder corpus: regex on the file name whose group 1 (or 'speaker') is the speaker")
    d.add_argument("--speaker-level", type=int, help="folder corpus: the folder this many levels below the label is the speaker")
    d.add_argument("--option", action="append", metavar="KEY=VALUE", help="other corpus scan option (repeatable)")
    p.set_defaults(func=cmd_data)

    _add_lazy_commands(sub)
    return ap


class _LazyParser(argparse.ArgumentParser):
    """A subcommand parser whose arguments are registered on first use.

    The argument lists of ``benchmark``, ``pretrain`` and ``intensity`` live in modules that import
    scikit-learn or torch; registering them only when that subcommand is parsed (or its help shown)
    keeps ``emoboost --help`` and ``emoboost data ...`` free of those imports.
    """

    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def _materialise(self) -> None:
        add, self.add_arguments = self.add_arguments, None
        if add is not None:
            add(self)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse signature
        self._materialise()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._materialise()
        return super().format_help()


def _lazy(sub, name: str, help: str, module: str, add: str, run: str) -> None:
    p = sub.add_parser(name, help=help)

    def register(parser: argparse.ArgumentParser) -> None:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise SystemExit(f"emoboost: error: the {name} command is unavailable: {e}") from e
        getattr(mod, add)(parser)
        parser.set_defaults(func=getattr(mod, run))

    p.add_arguments = register


def _add_lazy_commands(sub) -> None:
    """Commands whose argument lists live in heavy modules (imported only when the command runs)."""
    _lazy(sub, "train", "final model: CV (or --from-run RUN), then one model on all speakers -> a bundle",
          "emoboost.cli.train", "add_args", "run")
    _lazy(sub, "extract", "fill the SSL feature store for a corpus (resumable; --shard i/N, --engine ray)",
          "emoboost.cli.extract", "add_args", "main")
    _lazy(sub, "benchmark", "several methods × encoders on identical folds -> one table",
          "emoboost.cli.benchmark", "add_args", "main")
    _lazy(sub, "compare", "finished run directories side by side, with paired differences and bootstrap CIs",
          "emoboost.cli.compare", "add_args", "main")
    _lazy(sub, "pretrain", "self-supervised pretraining (Mockingjay / NPC, random or EMS masking)",
          "emoboost.cli.pretrain", "add_pretrain_args", "run_pretrain")
    _lazy(sub, "intensity", "frame-level emotion intensity curve of audio files",
          "emoboost.cli.pretrain", "add_intensity_args", "run_intensity")
    _lazy(sub, "export", "export a model bundle to ONNX (encoder + head; predict runs it with onnxruntime)",
          "emoboost.cli.export", "add_args", "main")
    _lazy(sub, "serve", "HTTP server for a model: POST /predict, GET /health, an upload/record page at /",
          "emoboost.cli.serve", "add_args", "main")


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space, or point --out / --cache-dir elsewhere",
    errno.EROFS: "read-only file system: point --out / --cache-dir at a writable folder",
    errno.EACCES: "no permission: point --out / --cache-dir at a writable folder",
    errno.EDQUOT: "disk quota exceeded: free space, or point --out / --cache-dir elsewhere",
}
_EXPECTED = (OSError, ValueError, LookupError, RuntimeError)
"""Error families user input, files and the disk raise; other types are reported as internal errors."""


def error_line(e: BaseException) -> str:
    """One line for an exception: the file and the problem when the OS names a file."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        msg = f"{where}: {e.strerror}"
        if e.errno in _OS_HINTS and _OS_HINTS[e.errno] not in msg:
            msg += f" ({_OS_HINTS[e.errno]})"
    elif isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        msg = e.args[0]
    else:
        msg = str(e) or type(e).__name__
    msg = " ".join(line.strip() for line in msg.splitlines() if line.strip())
    if not isinstance(e, _EXPECTED):
        msg = f"{type(e).__name__}: {msg} (an internal error; rerun with -v for the traceback)"
    return msg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        threads = args.threads
        if threads is None and not any(os.environ.get(v) for v in _THREAD_ENV):
            threads = default_threads()  # an explicit flag, the environment or a config key wins
        if threads is not None:
            used = set_threads(threads)  # checked against the machine: at least 1, at most its cores
            if args.threads is not None:
                args.threads = used  # what predict and serve hand to onnxruntime
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`emoboost predict ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 141
    except KeyboardInterrupt:
        if args.verbose:
            raise
        print("\nemoboost: interrupted; rerun to resume (finished folds and cached features are kept)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the command line's last line of defence: one line, no traceback
        if args.verbose:
            raise
        print(f"emoboost: error: {error_line(e)}", file=sys.stderr)
        return 2
