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
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from emoboost.utils import parse_value as _parse_value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Dotted ``key=value`` overrides (``method_params.lr=1e-4``); unknown top-level keys are errors later."""
    for o in overrides:
        if "=" not in o:
            raise SystemExit(f"override {o!r} must look like key=value")
        key, val = o.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SystemExit(f"override {o!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(val)
    return cfg


def _experiment_dict(args: argparse.Namespace) -> dict:
    cfg: dict = {}
    if args.config:
        cfg = _read_yaml(args.config)
    direct = {
        "corpus": args.corpus, "data_root": args.data_root, "manifest": args.manifest, "upstream": args.upstream,
        "method": args.method, "protocol": args.protocol, "n_folds": args.folds, "seeds": args.seeds,
        "segment_length": args.segment_length, "segment_hop": args.segment_hop, "out_dir": args.out,
        "segment_encoding": args.segment_encoding, "store": args.store, "store_layers": args.layers,
        "cache_dir": args.cache_dir, "classes": args.classes,
    }
    cfg.update({k: v for k, v in direct.items() if v is not None})
    params = cfg.setdefault("method_params", {})
    for p in args.param or []:
        apply_overrides(params, [p])
    apply_overrides(cfg, args.override or [])
    if args.min_class_count is not None:
        cfg["min_class_count"] = args.min_class_count
    for o in args.corpus_option or []:
        apply_overrides(cfg.setdefault("corpus_options", {}), [o])
    if args.quick:
        cfg["max_folds"] = 2
        if _accepts(cfg.get("method", "linear"), "max_epochs"):
            params.setdefault("max_epochs", 3)
        cfg["tsne"] = False
    if getattr(args, "tsne", False) and not args.quick:
        cfg["tsne"] = True
    if getattr(args, "plots", False):
        cfg["plots"] = True
    if getattr(args, "device", None):
        cfg["device"] = args.device
    if args.no_save_models:
        cfg["save_models"] = False
    if args.no_progress:
        cfg["progress"] = False
    return cfg


def _read_yaml(path: str) -> dict:
    """An experiment recipe; a missing or malformed file is one line naming it."""
    import yaml

    p = Path(path)
    try:
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: config file does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: invalid YAML ({' '.join(str(e).split())})") from e
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: an experiment config must be a mapping of keys, got {type(cfg).__name__}")
    return cfg


def _accepts(method: str, param: str) -> bool:
    """Whether ``method`` takes ``param`` (``--quick`` only caps epochs of methods that have epochs)."""
    from emoboost.methods import get_method
    from emoboost.methods.base import accepts_param

    try:
        return accepts_param(get_method(method), param)
    except KeyError:
        return False  # an unknown method is reported by the run itself


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML experiment config (recipes/...); flags override it")
    p.add_argument("--corpus", help="emodb, ravdess, iemocap, ... (default emodb)")
    p.add_argument("--data-root", help="corpus folder (default: $EMOBOOST_DATA/<corpus>, then $EMOBOOST_SHARED/data/<corpus>, then download)")
    p.add_argument("--manifest", help="a prepared manifest (.jsonl/.csv) instead of --corpus/--data-root")
    p.add_argument("--upstream", help="encoder: name (whisper-base, wav2vec2-base, ...), Hugging Face id or local dir")
    p.add_argument("--method", help="linear (SSL-only baseline, the default), logreg, msemoboost, ssl_cnn, svm, spec_cnn; "
                                    "linear and logreg choose their layers by inner CV on the training speakers "
                                    "(layer=auto) unless given -p layer=...")
    p.add_argument("-p", "--param", action="append", help="method parameter key=value (repeatable), e.g. -p layer=4")
    p.add_argument("-o", "--override", action="append", help="config override key=value, dotted for nesting")
    p.add_argument("--protocol", choices=["loso", "loso-session", "group-kfold", "stratified-kfold"])
    p.add_argument("--folds", type=int, help="number of folds for grouped protocols")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--segment-length", type=float)
    p.add_argument("--segment-hop", type=float)
    p.add_argument("--segment-encoding", choices=["utterance", "segment"],
                   help="SSL store: each clip on its own frames (default) or each segment alone (MS-EmoBoost's paper)")
    p.add_argument("--store", choices=["auto", "frames", "pooled"],
                   help="what the feature store keeps: auto (frames only when the method reads them), frames, pooled")
    p.add_argument("--layers", help="keep frames of these layers only, e.g. 2,3,4 (default all); use the same as extract")
    p.add_argument("--classes", nargs="+", help="keep only these labels")
    p.add_argument("--min-class-count", type=int,
                   help="fewest utterances a class may have (default: the number of folds)")
    p.add_argument("--corpus-option", action="append", metavar="KEY=VALUE",
                   help="corpus scan option (repeatable), e.g. speaker_regex='^(\\d+)_' for --corpus folder")
    p.add_argument("--out", help="run directory (default runs/<corpus>-<method>)")
    p.add_argument("--cache-dir", help="feature cache (default $EMOBOOST_CACHE or ~/.cache/emoboost)")
    p.add_argument("--device", help="encoder and torch methods: auto (default: cuda when visible), cpu, cuda, "
                                    "cuda:N, mps; also the config key device:")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 folds, 3 epochs, no t-SNE")
    p.add_argument("--tsne", action="store_true", help="also plot a t-SNE of the test embeddings (tsne.png)")
    p.add_argument("--plots", action="store_true",
                   help="also draw confusion.png (summary.md always has the matrix as a table); rerun a "
                        "finished run with --plots to draw it in seconds")
    p.add_argument("--no-save-models", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def cmd_run(args: argparse.Namespace) -> int:
    from emoboost.runner import ExperimentConfig, run_experiment

    d = _experiment_dict(args)
    threads = d.pop("threads", None)
    if threads and not args.threads:
        _set_threads(int(threads))
    d.setdefault("out_dir", f"runs/{d.get('corpus', 'emodb')}-{d.get('method', 'linear')}")
    sweeps = args.sweep or []
    if not sweeps:
        rep = run_experiment(ExperimentConfig.from_dict(d))
        print((Path(d["out_dir"]) / "summary.md").read_text())
        print(f"report: {d['out_dir']}  (total {rep['timings']['total_s']:.0f} s)")
        return 0
    key, _, values = sweeps[0].partition("=")
    rows = []
    base_out = d["out_dir"]
    for v in values.split(","):
        dd = json.loads(json.dumps(d))
        dd["method_params"][key] = _parse_value(v)
        dd["out_dir"] = f"{base_out}/{key}={v}"
        rep = run_experiment(ExperimentConfig.from_dict(dd))
        s = rep["summary"]
        rows.append((v, s["WA"], s["UA"], s["macro_F1"], rep["timings"]["total_s"]))
        print(f"{key}={v}: WA {100 * s['WA']['mean']:.2f} ± {100 * s['WA']['std']:.2f}  "
              f"UA {100 * s['UA']['mean']:.2f} ± {100 * s['UA']['std']:.2f}", flush=True)
    from emoboost.evaluation.report import fmt_pm

    proto = json.loads((Path(dd["out_dir"]) / "summary.json").read_text())["protocol"]
    lines = [f"# sweep over {key}", ""] + [f"- **{k}**: {v}" for k, v in proto.items() if k not in ("method", "parameters")]
    lines += ["", f"| {key} | WA | UA | macro-F1 | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {v} | {fmt_pm(wa)} | {fmt_pm(ua)} | {fmt_pm(f1)} | {t:.0f} |" for v, wa, ua, f1, t in rows]
    from emoboost.utils import atomic_write_text

    atomic_write_text(Path(base_out) / "sweep.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _check_bundle(model: Path) -> Path | None:
    """Parse ``bundle.json`` up front: a JSON error alone would not say which file is broken."""
    from emoboost.utils import read_json

    path = model / "bundle.json"
    if not path.is_file():
        return None  # Predictor.load explains a missing run directory or bundle
    bundle = read_json(path, "run bundle")
    if not isinstance(bundle, dict):
        raise ValueError(f"{path}: broken run bundle: expected a JSON object, got {type(bundle).__name__}")
    classes = bundle.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or len(classes) < 2:
        raise ValueError(f"{path}: broken run bundle: 'classes' must list at least 2 class names")
    return path


def cmd_data(args: argparse.Namespace) -> int:
    from emoboost.data.corpora import CORPORA, get_corpus, scan_corpus

    if args.data_cmd == "list":
        from emoboost.data.corpora import locate_corpus

        for name in sorted(CORPORA):
            info = get_corpus(name).INFO
            if name in ("folder", "csv"):  # your own data: always --data-root / --manifest
                where = "your own data: --data-root DIR"
            else:
                how, folder = locate_corpus(name)
                where = {"download": f"downloaded on first use from {info.url or 'its official URL'}",
                         "not here": f"no direct download: --data-root DIR (see {info.url})"}.get(how, f"{how}: {folder}")
            print(f"{name:10s} {len(info.classes):2d} classes  protocol={info.default_protocol:13s} {where}")
        return 0
    if args.data_cmd == "download":
        from emoboost.data.download import MAX_EXTRACT_BYTES, MAX_RATIO, download_corpus
        from emoboost.utils import default_cache_dir

        dest = args.dest or str(Path(default_cache_dir()) / "corpora")
        max_bytes = int(args.max_size * 1e9) if args.max_size is not None else MAX_EXTRACT_BYTES
        root = download_corpus(args.corpus, dest, url=args.url, force=args.force, max_bytes=max_bytes,
                               max_ratio=args.max_ratio if args.max_ratio is not None else MAX_RATIO)
        print(root)
        return 0
    if args.data_cmd == "prepare":
        options: dict = {}
        for o in args.option or []:
            apply_overrides(options, [o])
        flags = {"speaker_regex": args.speaker_regex, "speaker_level": args.speaker_level}
        options.update({k: v for k, v in flags.items() if v is not None})
        manifest, skipped = scan_corpus(args.corpus, args.root, options)
        if len(manifest) == 0:
            first = f"; first skipped: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
            raise ValueError(f"{args.corpus}: no usable utterances under {args.root} "
                             f"({len(skipped)} file(s) skipped{first})")
        manifest.write(args.out)
        print(f"{manifest} -> {args.out}")
        for p, problem in skipped:
            print(f"skipped {p}: {problem}", file=sys.stderr)
        return 0
    return 2


def cmd_methods(args: argparse.Namespace) -> int:
    from emoboost.methods.catalog import catalog, describe, format_method

    if args.name is None:
        infos = catalog()
        if args.json:
            print(json.dumps([i.to_dict() for i in infos], indent=2))
            return 0
        width = max(len(i.name) for i in infos)
        for i in infos:
            print(f"{i.name:<{width}}  {'+'.join(i.requires):<14} {i.summary}")
        print("\nemoboost methods NAME: its parameters (-p NAME=VALUE) with defaults")
        return 0
    info = describe(args.name)
    print(json.dumps(info.to_dict(), indent=2, default=repr) if args.json else format_method(info, long=args.long),
          end="" if not args.json else "\n")
    return 0


def cmd_upstreams(args: argparse.Namespace) -> int:
    from emoboost.upstreams import upstream_sources

    rows = upstream_sources()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        where = {"offline copy": f"offline copy {r['path']}", "hub cache": f"hub cache {r['path']}",
                 "download": f"downloaded from the hub ({r['hub_id']}) on first use"}[r["where"]]
        print(f"{r['name']:<{width}}  {r['size']:<16} {where}")
    print("\n--upstream also takes a Hugging Face id (owner/model) or a local folder: Hugging Face layout, "
          "or an emoboost pretrain checkpoint")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="emoboost", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--threads", type=int, help="CPU threads for torch and the BLAS (default: 1 on machines with <= 2 cores, "
                         "else the libraries' choice; also the config key threads:)")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_LazyParser)

    p = sub.add_parser("run", help="train + evaluate one method with speaker-independent CV, write a report")
    _add_run_args(p)
    p.add_argument("--sweep", action="append", help="method parameter sweep, e.g. layer=0,2,4,6,weighted")
    p.set_defaults(func=cmd_run)

    _lazy(sub, "predict", "label audio files, folders or lists with a run, final model or ONNX export "
          "(VAD for long files)", "emoboost.predict", "add_args", "main")

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
          "emoboost.final", "add_args", "run")
    _lazy(sub, "extract", "fill the SSL feature store for a corpus (resumable; --shard i/N, --engine ray)",
          "emoboost.extract", "add_args", "main")
    _lazy(sub, "benchmark", "several methods × encoders on identical folds -> one table",
          "emoboost.benchmark", "add_args", "run")
    _lazy(sub, "compare", "finished run directories side by side, with paired differences and bootstrap CIs",
          "emoboost.evaluation.compare", "add_args", "main")
    _lazy(sub, "pretrain", "self-supervised pretraining (Mockingjay / NPC, random or EMS masking)",
          "emoboost.pretrain.cli", "add_pretrain_args", "run_pretrain")
    _lazy(sub, "intensity", "frame-level emotion intensity curve of audio files",
          "emoboost.pretrain.cli", "add_intensity_args", "run_intensity")
    _lazy(sub, "export", "export a model bundle to ONNX (encoder + head; predict runs it with onnxruntime)",
          "emoboost.export", "add_args", "main")
    _lazy(sub, "serve", "HTTP server for a model: POST /predict, GET /health, an upload/record page at /",
          "emoboost.serve", "add_args", "main")


_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads() -> int | None:
    """1 on machines with at most 2 usable cores, else None (the libraries' own choice).

    On 2 cores a second thread buys little when the machine is idle and costs several times the wall
    time when anything else runs (OpenMP/BLAS threads spin waiting for the busy core), so 1 is the
    safe default there; larger machines keep torch's and the BLAS's defaults.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 1 if cores <= 2 else None


def _set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch, OpenMP and the BLAS (NumPy/SciPy/scikit-learn).

    Libraries not imported yet read the environment when they load, so setting it costs no import
    (``emoboost data list`` stays torch-free); the ones already loaded are told directly.
    """
    for var in _THREAD_ENV:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return
        threadpool_limits(limits=n)


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
        if not threads and not any(os.environ.get(v) for v in _THREAD_ENV):
            threads = default_threads()  # an explicit flag, the environment or a config key wins
        if threads:
            _set_threads(threads)
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


if __name__ == "__main__":
    sys.exit(main())
