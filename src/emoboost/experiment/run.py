"""One experiment: corpus -> features (cached) -> speaker-independent folds × seeds -> report + models.

Resumable: every finished (fold, seed) writes its result atomically and is skipped on rerun, and
features come from the content-addressed cache, so a killed run loses at most the fold in flight.
Each result records its provenance (:func:`run_provenance`); a rerun reuses only results whose
record equals its own, and refuses, naming what differs, to mix them with anything else. The run
directory is owned and locked through :mod:`emoboost.outdir`: one writer at a time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoboost.audio import Segmenting
from emoboost.data.manifest import Manifest, warn_duration_outliers
from emoboost.evaluation.metrics import check_finite
from emoboost.evaluation.report import FoldResult, merge_descriptions, plot_tsne, write_report
from emoboost.experiment.speaker_protocols import adapted_predict
from emoboost.methods import UtteranceSet, get_method
from emoboost.outdir import check_resume, claim_dir, code_version
from emoboost.protocols import check_disjoint, describe, make_folds
from emoboost.utils import atomic_write, atomic_write_text, library_errors, machine_line

log = logging.getLogger(__name__)

PLACEHOLDER_CLASSES = ["a", "b"]  # a method's parameters are checked before the corpus names its classes


def default_cache_dir() -> str:
    from emoboost.utils import default_cache_dir as d

    return str(d())


@dataclass
class ExperimentConfig:
    """Everything that determines a run's numbers (saved as config.json in the run directory)."""

    corpus: str = "emodb"
    data_root: str | None = None
    manifest: str | None = None
    upstream: str | None = "whisper-base"
    method: str = "linear"
    method_params: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None
    n_folds: int | None = None
    valid_speakers: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    segment_length: float = 3.0
    segment_hop: float | None = None
    # Feature store: "utterance" encodes each clip on its own frames (no padding); "segment" encodes each
    # segment on its own (MS-EmoBoost's paper). store: "auto" keeps frames only when the method reads them.
    segment_encoding: str = "utterance"
    store: str = "auto"  # auto | frames | pooled
    store_layers: Any = None  # None/"all" or a list of layers whose frames are kept
    encoder_window: float = 30.0
    min_duration: float = 0.1
    classes: list[str] | None = None
    min_class_count: int | None = None  # default: the number of folds
    corpus_options: dict[str, Any] = field(default_factory=dict)  # e.g. speaker_regex for a folder corpus
    # Several corpora merged (labels mapped to common names, the shared classes kept, ids and speakers
    # prefixed by corpus; emoboost.data.crosscorpus): with test_corpora the protocol is cross-corpus
    # (train on the others), otherwise leave-one-corpus-out; one corpus = its own protocol on common names.
    corpora: list[str] | None = None
    test_corpora: list[str] | None = None
    label_map: str | None = None  # YAML/JSON file: label -> common name, over the built-in map
    out_dir: str = "runs/experiment"
    cache_dir: str = field(default_factory=default_cache_dir)
    save_models: bool = True
    tsne: bool = False  # opt-in (--tsne): the plot costs more than fitting a pooled probe
    plots: bool = False  # opt-in (--plots): confusion.png; summary.md always has the matrix as a table
    device: str = "auto"  # encoder and torch methods: auto (cuda when visible), cpu, cuda, cuda:N, mps
    batch_size: int = 8
    progress: bool = True
    max_folds: int | None = None  # run only the first k folds (smoke tests / --quick)

    def __post_init__(self) -> None:
        self.segmenting  # noqa: B018 - a bad segment length or hop is refused here, before any work

    @property
    def segmenting(self) -> Segmenting:
        return Segmenting(self.segment_length, self.segment_hop)

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def resolve_data_root(corpus: str, data_root: str | None) -> Path:
    """Explicit path > $EMOBOOST_DATA/<corpus> > <shared>/data/<corpus> > official download into the cache."""
    if data_root:
        return Path(data_root)
    from emoboost.data.corpora import get_corpus, locate_corpus

    mod = get_corpus(corpus)
    how, folder = locate_corpus(corpus)
    if how in ("EMOBOOST_DATA", "shared"):
        return folder
    if how == "not here":  # the commands that get here (run, train, extract, benchmark) all take --data-root
        from emoboost.data.download import NO_DIRECT_DOWNLOAD
        from emoboost.utils import shared_root

        key = corpus.lower().replace("-", "").replace("_", "")
        get = NO_DIRECT_DOWNLOAD.get(key) or (f"obtain it from {mod.INFO.url}" if mod.INFO.url else "")
        raise FileNotFoundError(f"no local copy of {corpus!r} (none under $EMOBOOST_DATA or {shared_root() / 'data'})"
                                f": {get + ', then ' if get else ''}pass its folder with --data-root")
    if not hasattr(mod, "download"):
        raise FileNotFoundError(
            f"no local copy of {corpus!r}: pass --data-root, set EMOBOOST_DATA, or obtain it from {mod.INFO.url}"
        )
    return Path(mod.download(Path(default_cache_dir()) / "corpora"))


def scan_one(corpus: str, data_root: str | None = None, options: dict | None = None,
             ) -> tuple[Manifest, list[tuple[str, str]], dict]:
    """One registered corpus -> (manifest, skipped files from the scan, corpus info dict)."""
    from emoboost.data.corpora import get_corpus, scan_corpus

    mod = get_corpus(corpus)
    info = {"name": mod.INFO.name, "default_protocol": mod.INFO.default_protocol, "default_folds": mod.INFO.default_folds}
    root = resolve_data_root(corpus, data_root)
    info["data"] = str(Path(root).resolve())  # part of a run's provenance: another copy is another corpus
    if hasattr(mod, "scan"):
        manifest, skipped = scan_corpus(corpus, root, options or {})
        return manifest, list(skipped), info
    return mod.prepare(root), [], info


def corpus_names(names: list[str] | None) -> list[str]:
    """Registry names (``CASIA`` -> ``casia``), each once: how merged manifests and folds name corpora."""
    from emoboost.data.corpora import get_corpus

    out = [get_corpus(n).INFO.name for n in names or []]
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ValueError(f"corpus {', '.join(twice)} named twice; every corpus is either trained or tested on")
    return out


def load_corpora(cfg: ExperimentConfig) -> tuple[Manifest, list[tuple[str, str]], dict]:
    """``cfg.corpora`` merged over their shared classes (:func:`emoboost.data.crosscorpus.merge_corpora`)."""
    from emoboost.data.crosscorpus import load_label_map, merge_corpora

    if cfg.manifest or cfg.data_root or cfg.corpus_options:
        raise ValueError("several corpora are read from their default places ($EMOBOOST_DATA/<name>, "
                         "$EMOBOOST_SHARED/data/<name> or a download); --data-root, --manifest and "
                         "--corpus-option name a single corpus's")
    names, tests = corpus_names(cfg.corpora), corpus_names(cfg.test_corpora)
    if set(tests) - set(names):
        raise ValueError(f"test corpora {sorted(set(tests) - set(names))} are not among the corpora {names}")
    parts, skipped, info, roots = {}, [], {}, []
    for name in names:
        m, bad, info = scan_one(name)
        parts[name], skipped = m.filter(lambda u: u.label is not None), skipped + bad
        roots.append(f"{name}={info['data']}")
    manifest, merge = merge_corpora(parts, load_label_map(cfg.label_map), cfg.classes)
    if len(names) > 1:
        train = [n for n in names if n not in tests]
        info = {"name": f"{' + '.join(train)} → {' + '.join(tests)}" if tests else ", ".join(names),
                "default_protocol": "cross-corpus" if tests else "leave-one-corpus-out"}
    return manifest, skipped, {**info, "data": "; ".join(roots), "test_corpora": tests, "merge": merge}


def load_manifest(cfg: ExperimentConfig) -> tuple[Manifest, list[tuple[str, str]], dict]:
    """-> (manifest, skipped files from the scan, corpus info dict)."""
    info: dict = {"name": cfg.corpus}
    skipped: list[tuple[str, str]] = []
    if cfg.corpora:
        manifest, skipped, info = load_corpora(cfg)
    elif cfg.test_corpora or cfg.label_map:
        raise ValueError("test corpora and a label map need several corpora (corpora:, or --train/--test, "
                         "--leave-one-corpus-out)")
    elif cfg.manifest:
        manifest = Manifest.read(cfg.manifest, skipped=skipped)  # bad rows are listed, not fatal
        info["data"] = str(Path(cfg.manifest).resolve())
    else:
        manifest, skipped, info = scan_one(cfg.corpus, cfg.data_root, cfg.corpus_options)
    manifest = manifest.filter(lambda u: u.label is not None)
    if len(manifest) == 0:
        raise ValueError("the manifest has no labelled utterances")
    from emoboost.protocols import CORPUS_PROTOCOLS, check_classes

    protocol = cfg.protocol or info.get("default_protocol", "loso")
    n_folds = cfg.n_folds or (len(manifest.speakers()) if protocol == "loso" else info.get("default_folds") or 2)
    if protocol in CORPUS_PROTOCOLS:  # a class needs an utterance on each side of every corpus fold
        n_folds = 1 if protocol == "cross-corpus" else len(set(manifest.groups("corpus")))
    manifest = check_classes(manifest, cfg.classes, n_folds=min(int(n_folds), 10**6),
                             min_class_count=cfg.min_class_count)
    return manifest, list(skipped), info


def align_to_view(manifest: Manifest, view: Any) -> tuple[Manifest, Any]:
    """The utterances that have a store entry, and the view's rows in manifest order. By id: an utterance
    without an entry is never looked up, whatever its path's spelling."""
    pos = {uid: i for i, uid in enumerate(view.ids)}
    manifest = manifest.filter(lambda u: u.id in pos)
    return manifest, view.subset([pos[u.id] for u in manifest])


def build_dataset(manifest: Manifest, features: dict[str, dict[str, np.ndarray]], classes: list[str],
                  ssl=None) -> UtteranceSet:
    index = {c: i for i, c in enumerate(classes)}
    return UtteranceSet(
        ids=manifest.ids,
        y=np.array([index[u.label] for u in manifest], dtype=int),
        groups=manifest.groups("speaker"),
        features={n: [features[n][u.id] for u in manifest] for n in features},
        ssl=ssl,
    )


def store_spec(cfg: ExperimentConfig, method) -> Any:
    """The feature-store spec a run needs: frames only when the method reads them (or when asked)."""
    from emoboost.features.store import StoreSpec, parse_kept_layers

    if cfg.store not in ("auto", "frames", "pooled"):
        raise ValueError(f"store must be auto, frames or pooled, got {cfg.store!r}")
    needs = method.needs_frames()
    if cfg.store == "pooled" and needs:
        raise ValueError(f"method {cfg.method!r} reads frame windows, but store=pooled keeps statistics only; "
                         f"use --store frames (or auto)")
    keep = cfg.store == "frames" or (cfg.store == "auto" and needs)
    return StoreSpec(encoding=cfg.segment_encoding, frames=parse_kept_layers(cfg.store_layers) if keep else None,
                     window=cfg.encoder_window, segmenting=cfg.segmenting)


def prepare_ssl(cfg: ExperimentConfig, manifest: Manifest, method) -> tuple[Any, list[tuple[str, str]], dict]:
    """Fill (or reuse) the feature store for the run -> (SSLView over the usable utterances, skipped, info)."""
    from emoboost.features.extract import extract_to_store
    from emoboost.features.pipeline import open_store, store_num_layers
    from emoboost.features.views import SSLView, StoreSource

    spec = store_spec(cfg, method)
    store, lazy = open_store(cfg.upstream, cfg.cache_dir, spec, device=cfg.device)
    keep: list[int] | None = None
    if method.needs_frames():  # fail before spending: the layers the method reads must be stored
        n_layers = store_num_layers(store, manifest, lazy)
        need = method.ssl_layers(n_layers)
        have = spec.frame_layers(n_layers)
        missing = sorted(set(need) - set(have))
        if missing:
            raise ValueError(f"method {cfg.method!r} reads layer(s) {missing}, but store_layers keeps frames of "
                             f"{list(have)} only; add them to --layers")
    else:  # pooled probes: the run keeps the statistics of the layers they read, N × k × D, nothing more
        try:
            keep = method.ssl_layers(store_num_layers(store, manifest, lazy))
        except ValueError:
            keep = None  # an invalid layer choice is reported by the method itself
    # Digital silence carries no emotion: corpus runs skip such files and list them in skipped.json.
    rep = extract_to_store(manifest, store, lazy, progress=cfg.progress, min_duration=cfg.min_duration,
                           reject_silence=True, keep_layers=keep)
    info = {"spec": cfg.upstream, "fingerprint": store.fingerprint, "store": spec.describe(),
            "encoder_built": lazy.built, "extraction": rep.summary()}
    if not rep.hashes:
        return None, rep.skipped, info
    ids = list(rep.hashes)
    kept = [rep.kept[u] for u in ids] if keep and all(u in rep.kept for u in ids) else None
    path_of = {u.id: u.path for u in manifest}
    source = StoreSource(store, list(rep.hashes.values()), segmenting=cfg.segmenting,
                         num_samples=[rep.samples[u] for u in ids], num_frames=[rep.frames[u] for u in ids],
                         kept_layers=keep or (), kept=kept, paths=[path_of[u] for u in ids])
    source.upstream_spec = cfg.upstream  # type: ignore[attr-defined]  # methods that fine-tune encoder layers load them
    info.update({"num_layers": source.num_layers, "hidden_size": source.hidden_size, "frame_rate": source.frame_rate})
    view = SSLView(source)
    view.ids = list(rep.hashes)  # type: ignore[attr-defined]
    return view, rep.skipped, info


def _segmenting_line(cfg: ExperimentConfig, method) -> str:
    seg = (f"{cfg.segment_length:g} s segments, hop {cfg.segment_hop or cfg.segment_length:g} s, last zero-padded; "
           f"utterance = mean segment posterior")
    if "ssl" in method.requires and not method.needs_frames():
        return "none: one pooled vector per utterance (the clip's own frames)"
    return seg


RUNTIME_KEYS = frozenset({"progress", "out_dir", "cache_dir", "tsne", "plots", "device", "save_models", "max_folds",
                          "batch_size"})
"""Config keys that never change a result: a run may be resumed with other values of them."""
_NOT_IDENTITY = RUNTIME_KEYS | {"seeds", "data_root", "manifest"}  # one result per seed; data paths compared resolved


def run_provenance(cfg: ExperimentConfig, manifest: Manifest, info: dict, method, fingerprint: str | None) -> dict:
    """What produces a (fold, seed) result, as plain JSON: the code version
    (:func:`emoboost.outdir.code_version`), the config (runtime keys, seeds and data paths aside), the
    method's parameters with their defaults (so a changed default shows by name), the resolved data root
    or manifest path, the manifest's content digest and the encoder fingerprint (None without SSL)."""
    config = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IDENTITY}
    rec = {"code": code_version(), "config": config, "method": method.params, "data": info.get("data"),
           "manifest": manifest.digest(), "features": fingerprint}
    return json.loads(json.dumps(rec, sort_keys=True, default=str))


def check_seeds(seeds: list[int]) -> None:
    """One line for a seed list that would repeat results (``--seeds 0 0``) or give none."""
    if not seeds:
        raise ValueError("seeds: none given; give at least one (e.g. --seeds 0)")
    dup = next((s for i, s in enumerate(seeds) if s in seeds[:i]), None)
    if dup is not None:
        raise ValueError(f"seeds {' '.join(map(str, seeds))}: seed {dup} is given twice; give each seed once")


def run_experiment(cfg: ExperimentConfig) -> dict:
    """Run (or resume) an experiment and write its report directory; returns the report dict.

    Everything is checked before the run directory is touched; then it is claimed (a new or empty
    folder, or a run directory; locked for this process) and its finished results are checked against
    this run's provenance before any of them is reused.
    """
    t_start = time.perf_counter()
    out = Path(cfg.out_dir)
    check_seeds(cfg.seeds)
    # Fail before spending: the method's parameters (every value, by its declared rule) before the corpus
    # is even read; manifest, classes and folds before any feature is extracted.
    get_method(cfg.method)(PLACEHOLDER_CLASSES, **cfg.method_params)
    manifest, skipped, info = load_manifest(cfg)
    classes = sorted(set(manifest.labels()))
    protocol = cfg.protocol or info.get("default_protocol", "loso")
    n_folds = cfg.n_folds if cfg.n_folds is not None else (info.get("default_folds") if protocol != "loso" else None)
    probe = get_method(cfg.method)(classes, **cfg.method_params)
    if str(cfg.device).lower() not in ("auto", "cpu"):  # a device this machine lacks fails here, not after extraction
        from emoboost.utils import resolve_device

        resolve_device(cfg.device)
    names = tuple(probe.requires)
    make_folds(manifest, protocol, n_folds=n_folds, valid_speakers=cfg.valid_speakers, seed=0,
               test_corpora=info.get("test_corpora"))
    warn_duration_outliers(manifest)
    fingerprint = None
    if "ssl" in names:
        from emoboost.features.pipeline import LazyUpstream

        store_spec(cfg, probe)
        fingerprint = LazyUpstream(str(cfg.upstream), cfg.device).fingerprint()
    prov = run_provenance(cfg, manifest, info, probe, fingerprint)
    with claim_dir(out, "run", clean=("folds", "models")):
        check_resume(out, prov, cfg.seeds)
        return _run_claimed(cfg, out, prov, manifest, skipped, info, classes, protocol, n_folds, probe, names, t_start)


def _run_claimed(cfg: ExperimentConfig, out: Path, prov: dict, manifest: Manifest, skipped: list, info: dict,
                 classes: list[str], protocol: str, n_folds: int | None, probe, names: tuple[str, ...],
                 t_start: float) -> dict:
    """The run itself, in its claimed and checked directory."""
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2, sort_keys=True))

    up_info: dict = {}
    ssl_view = None
    t0 = time.perf_counter()
    hash_of: dict[str, str] = {}  # utterance id -> audio hash, where extraction computed it
    if "ssl" in names:
        ssl_view, bad_ssl, up_info = prepare_ssl(cfg, manifest, probe)
        skipped += bad_ssl
        if ssl_view is not None:
            hash_of = dict(zip(ssl_view.ids, ssl_view.source.hashes))
    acoustic = [n for n in names if n != "ssl"]
    bad_paths = {p for p, _ in skipped}
    manifest = manifest.filter(lambda u: u.path not in bad_paths)
    feats: dict = {}
    if acoustic:
        from emoboost.features.pipeline import compute_corpus_features

        feats, bad = compute_corpus_features(manifest, acoustic, cfg.segmenting, cfg.cache_dir,
                                             min_duration=cfg.min_duration, progress=cfg.progress)
        skipped += bad
    t_feat = time.perf_counter() - t0
    bad_paths = {p for p, _ in skipped}
    manifest = manifest.filter(lambda u: u.path not in bad_paths)
    if ssl_view is not None:
        manifest, ssl_view = align_to_view(manifest, ssl_view)
    atomic_write_text(out / "skipped.json", json.dumps([{"path": p, "problem": m} for p, m in skipped], indent=2))
    if len(manifest) == 0:
        first = f"first: {skipped[0][0]}: {skipped[0][1]}; " if skipped else ""
        raise ValueError(f"no usable utterances left: all {len(skipped)} file(s) were skipped ({first}all in "
                         f"{out / 'skipped.json'})")
    from emoboost.features.cache import write_warnings

    write_warnings(out, manifest, hash_of, cfg.cache_dir)
    manifest.write(out / "manifest.jsonl")
    if info.get("merge"):
        atomic_write_text(out / "corpora.json", json.dumps(info["merge"].to_dict(), indent=2, ensure_ascii=False))
    data = build_dataset(manifest, feats, classes, ssl=ssl_view)

    folds = make_folds(manifest, protocol, n_folds=n_folds, valid_speakers=cfg.valid_speakers, seed=0,
                       test_corpora=info.get("test_corpora"))
    if cfg.max_folds:
        folds = folds[: cfg.max_folds]
    atomic_write_text(out / "folds.json", json.dumps([f.to_dict(manifest.ids) for f in folds], indent=2))
    results: list[FoldResult] = []
    embeddings: dict[str, np.ndarray] = {}
    method_info: dict = {}
    n_params, t_embed, fitted = 0, 0.0, {}  # fitted: a seed-free fit of the current fold, for its other seeds
    (out / "folds").mkdir(exist_ok=True)
    for fold in folds:
        check_disjoint(manifest, np.concatenate([fold.train, fold.valid]), fold.test) if fold.speaker_independent else None
        for seed in cfg.seeds:
            res_path = out / "folds" / f"fold{fold.index:02d}_seed{seed}.json"
            emb_path = out / "folds" / f"fold{fold.index:02d}_seed{seed}.emb.npy"
            if res_path.exists():
                results.append(FoldResult.from_json(res_path.read_text()))
                if emb_path.exists() and seed == cfg.seeds[0]:
                    e = np.load(emb_path)
                    for i, k in enumerate(results[-1].test_ids):
                        embeddings[k] = e[i]
                continue
            method = fitted.get(fold.index) or get_method(cfg.method)(classes, **cfg.method_params)
            method.device = cfg.device
            train, valid, test = data.subset(fold.train), data.subset(fold.valid), data.subset(fold.test)
            t1 = time.perf_counter()
            with library_errors(f"fold {fold.index} seed {seed}: {cfg.method}"):
                if fold.index not in fitted:  # a fit that ignores the seed is done once per fold
                    method.fit(train, valid if len(valid) else None, seed=seed)
                    fitted = {fold.index: method} if getattr(method, "deterministic_fit", False) else {}
                t_fit = time.perf_counter() - t1
                t2 = time.perf_counter()
                test, proba = adapted_predict(method, test, seed)  # the adapt= protocol's scored utterances
                t_inf = time.perf_counter() - t2
            check_finite(proba, fold.index, seed, cfg.method)
            method_info = method.describe()
            n_params = method.num_parameters()
            info_d = {"best_epoch": getattr(method, "best_epoch_", None), "method": method_info, "n_params": n_params,
                      "features": up_info.get("fingerprint"), "provenance": prov}
            r = FoldResult(fold.index, seed, list(fold.test_groups), test.ids, test.y.tolist(),
                           proba.argmax(1).tolist(), proba.round(6).tolist(),
                           {"fit_s": t_fit, "predict_s": t_inf}, info_d)
            if cfg.tsne and seed == cfg.seeds[0]:
                t3 = time.perf_counter()
                e = method.embed(test)
                if e is not None:
                    emb = e.astype(np.float32)
                    atomic_write(emb_path, lambda f, emb=emb: np.save(f, emb, allow_pickle=False))
                    for i, k in enumerate(test.ids):
                        embeddings[k] = e[i]
                t_embed += time.perf_counter() - t3
            if cfg.save_models:
                method.save(out / "models" / f"fold{fold.index:02d}_seed{seed}")
            atomic_write_text(res_path, r.to_json())
            results.append(r)
            log.info("fold %d seed %d: %s", fold.index, seed, r.metrics)

    method_info = merge_descriptions(results)  # what each fold chose (logreg's C, layer=auto's layers)
    if results and not n_params:
        n_params = results[0].info.get("n_params", 0)
    merge = info.get("merge")
    protocol_info = {
        "corpus": info.get("name", cfg.corpus),
        "utterances": len(manifest),
        "speakers": len(manifest.speakers()),
        "classes": f"{len(classes)} ({', '.join(classes)})",
        # several corpora (or one on common names): the map and what each corpus lost
        **({"label map": merge.map_line(), "classes left out": merge.left_out_line()} if merge else {}),
        "protocol": describe(protocol, folds) + (f" (first {cfg.max_folds} folds only)" if cfg.max_folds else ""),
        "seeds": ", ".join(map(str, cfg.seeds)),
        "method": f"{cfg.method} {json.dumps(cfg.method_params, sort_keys=True)}",
        "upstream": f"{cfg.upstream} ({up_info.get('fingerprint', '-')})" if up_info else "none",
        "features": up_info.get("store", "acoustic features only") if up_info else "acoustic features only",
        "segmenting": _segmenting_line(cfg, probe),
        "parameters": n_params,
        "skipped files": len(skipped),
        "machine": machine_line(cfg.device),
    }
    for k, v in method_info.items():
        protocol_info[k if k not in protocol_info else f"method {k}"] = v
    t3 = time.perf_counter()
    rep = write_report(out, results, classes, protocol_info, plots=cfg.plots)
    t_report = time.perf_counter() - t3
    t3 = time.perf_counter()
    if cfg.tsne and len(embeddings) >= 10:  # once per run, on every test utterance's fold embedding
        ids = [i for i in manifest.ids if i in embeddings]
        y = np.array([classes.index(u.label) for u in manifest if u.id in embeddings])
        plot_tsne(np.stack([embeddings[i] for i in ids]), y, classes, out / "tsne.png")
    t_tsne = time.perf_counter() - t3
    timings = {"features_s": t_feat, "total_s": time.perf_counter() - t_start, **rep["summary"]["timings_total_s"],
               "embed_s": t_embed, "report_s": t_report, "tsne_s": t_tsne}
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2))
    up_bundle = {k: up_info[k] for k in ("spec", "fingerprint", "num_layers", "hidden_size", "frame_rate") if k in up_info}
    if up_info.get("num_layers"):
        up_bundle["layers"] = probe.ssl_layers(int(up_info["num_layers"]))
    bundle = {"classes": classes, "method": cfg.method, "upstream": up_bundle, "segment_length": cfg.segment_length,
              "segment_hop": cfg.segment_hop, "segment_encoding": cfg.segment_encoding,
              "encoder_window": cfg.encoder_window, "features": list(names), "models": [  # this run's results only, never a model left by another
                  m for m in (f"models/fold{r.fold:02d}_seed{r.seed}" for r in results) if (out / m).is_dir()]
              if cfg.save_models else []}
    atomic_write_text(out / "bundle.json", json.dumps(bundle, indent=2))
    rep["timings"] = timings
    return rep
