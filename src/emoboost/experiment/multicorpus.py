"""``emoboost benchmark --corpora`` and ``--cross-corpus``: the benchmark over several corpora, one table.

- ``--corpora A B C``: each corpus under its own default speaker-independent protocol, its runs in
  ``OUT/<corpus>/``; one table of UA (fold mean ± std and pooled) per corpus and method, with the mean
  over the corpora. With ``--classes`` or ``--label-map`` labels are first mapped to common names
  (:mod:`emoboost.data.crosscorpus`), so ``--classes anger sadness`` means the same in every corpus.
- ``--cross-corpus A B C``: every corpus as the test corpus, trained on each other corpus alone and on
  all the others together (the ``cross-corpus`` protocol), beside its own speaker-independent CV; every
  cell over the same classes, those all listed corpora share (or ``--classes``). Runs in
  ``OUT/<test>/in-corpus`` and ``OUT/<test>/from-<training corpora>``.

Every cell is one ordinary benchmark table (:func:`emoboost.experiment.benchmark.run_table`: the same
methods, upstreams, seeds and loop), so each resumes and can be read on its own.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emoboost.evaluation.report import fmt_pm
from emoboost.experiment.benchmark import _entry_names, _paired_entries, run_table
from emoboost.outdir import claim_dir
from emoboost.utils import atomic_write_text


def _ua(row: dict) -> tuple[dict, float]:
    """(UA fold mean ± std, pooled UA mean over seeds) of a benchmark row."""
    pooled = [m["UA"] for m in row["pooled"].values()]
    return row["UA"], sum(pooled) / len(pooled)


def _entry(row: dict) -> str:
    return row["entry"].split(" @ ")[0]


def _check_flags(args: argparse.Namespace, mode: str) -> list[str]:
    """The corpora of ``--corpora`` / ``--cross-corpus`` (registry names), refusing flags of another mode."""
    from emoboost.experiment.run import corpus_names

    clash = [f for f, v in (("--corpus", args.corpus), ("--data-root", args.data_root), ("--manifest", args.manifest),
                            ("--train", args.train), ("--test", args.test),
                            ("--leave-one-corpus-out", args.leave_one_corpus_out)) if v]
    if mode == "--cross-corpus" and args.protocol:
        clash.append("--protocol")
    if clash:
        raise ValueError(f"{mode} reads every corpus from its default place under its own protocol; "
                         f"{', '.join(clash)} cannot go with it")
    names = corpus_names(args.corpora if mode == "--corpora" else args.cross_corpus)
    if len(names) < 2:
        raise ValueError(f"{mode} needs at least 2 corpora (one corpus: --corpus)")
    return names


def run_corpora(args: argparse.Namespace) -> int:
    """``--corpora``: each corpus's own protocol, one table with the mean over corpora."""
    names = _check_flags(args, "--corpora")
    out = Path(args.out or f"runs/benchmark-{'+'.join(names)}")
    with claim_dir(out, "benchmark"):  # one benchmark folder per corpus inside it
        return _corpora_table(args, names, out)


def _corpora_table(args: argparse.Namespace, names: list[str], out: Path) -> int:
    pairs = _paired_entries(args.paired or [], _entry_names(args))
    common = bool(args.classes or args.label_map)
    t0 = time.perf_counter()
    cells = {}
    for c in names:
        rows, same = run_table(args, out / c, {"corpora": [c]} if common else {"corpus": c}, pairs, cell=c)
        cells[c] = (rows, same)
    first = cells[names[0]][0][0]["protocol"]
    lines = [f"# emoboost benchmark: {', '.join(names)}", ""]
    for c in names:
        rows, same = cells[c]
        p = rows[0]["protocol"]
        lines.append(f"- **{c}**: {p['utterances']} utterances, {p['speakers']} speakers, classes {p['classes']}; "
                     f"{p['protocol']}; identical folds across entries: {'yes' if same else 'NO'}; runs in "
                     f"`{out / c}`" + (f"; classes left out: {p['classes left out']}" if "classes left out" in p else ""))
    lines += [f"- **{k}**: {first[k]}" for k in ("label map", "seeds", "features", "machine") if k in first and
              (k != "label map" or common)]
    lines.append(f"- **total wall time**: {time.perf_counter() - t0:.0f} s")
    lines += ["", "UA %: mean ± std over each corpus's own folds; pooled: over all its test utterances (mean over "
              "seeds); mean: over the corpora.", "",
              "| method | upstream | " + " | ".join(f"{c} UA | {c} pooled UA" for c in names)
              + " | mean UA | mean pooled UA |", "|---|---|" + "---|---|" * len(names) + "---|---|"]
    table = []
    for i, r0 in enumerate(cells[names[0]][0]):
        per = {c: _ua(cells[c][0][i]) for c in names}
        mean_ua = sum(u["mean"] for u, _ in per.values()) / len(per)
        mean_pooled = sum(p for _, p in per.values()) / len(per)
        lines.append(f"| {_entry(r0)} | {r0['upstream'] or '-'} | "
                     + " | ".join(f"{fmt_pm(u)} | {100 * p:.2f}" for u, p in per.values())
                     + f" | {100 * mean_ua:.2f} | {100 * mean_pooled:.2f} |")
        table.append({"entry": r0["entry"], "upstream": r0["upstream"], "mean_UA": mean_ua, "mean_pooled_UA": mean_pooled,
                      "corpora": {c: {"UA": u, "pooled_UA": p, "run_dir": cells[c][0][i]["run_dir"]}
                                  for c, (u, p) in per.items()}})
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "benchmark.md", md)
    atomic_write_text(out / "benchmark.json", json.dumps({
        "corpora": names, "identical_folds": {c: same for c, (_, same) in cells.items()},
        "protocols": {c: rows[0]["protocol"] for c, (rows, _) in cells.items()}, "rows": table}, indent=2, default=str))
    print(md)
    return 0 if all(same for _, same in cells.values()) else 1


def run_cross_corpus(args: argparse.Namespace) -> int:
    """``--cross-corpus``: test on each corpus, trained on each other one and on all others, beside in-corpus CV."""
    from emoboost.experiment.run import ExperimentConfig, load_corpora

    names = _check_flags(args, "--cross-corpus")
    # one class set for every cell: what all listed corpora share (or --classes), read before anything runs
    _, _, info = load_corpora(ExperimentConfig(corpora=names, label_map=args.label_map, classes=args.classes))
    out = Path(args.out or f"runs/cross-corpus-{'+'.join(names)}")
    with claim_dir(out, "benchmark"):  # one benchmark folder per cell inside it
        return _cross_corpus_table(args, names, info["merge"], out)


def _cross_corpus_table(args: argparse.Namespace, names: list[str], merge, out: Path) -> int:
    pairs = _paired_entries(args.paired or [], _entry_names(args))
    t0 = time.perf_counter()
    sources = [*names, "others"] if len(names) > 2 else names
    cells: dict[tuple[str, str], list[dict]] = {}
    same_all = True
    for test in names:
        others = [c for c in names if c != test]
        plans = {"in-corpus": {"corpora": [test]}}
        plans.update({s: {"corpora": [s, test], "test_corpora": [test], "protocol": "cross-corpus"} for s in others})
        if len(others) > 1:
            plans["others"] = {"corpora": [*others, test], "test_corpora": [test], "protocol": "cross-corpus"}
        for src, plan in plans.items():
            sub = out / test / ("in-corpus" if src == "in-corpus" else f"from-{'+'.join(plan['corpora'][:-1])}")
            rows, same = run_table(args, sub, {**plan, "classes": merge.classes}, pairs, cell=f"{test}/{sub.name}")
            cells[test, src] = rows
            same_all &= same
    lines = [f"# emoboost cross-corpus benchmark: {', '.join(names)}", "",
             f"- **classes**: {len(merge.classes)} ({', '.join(merge.classes)}), in every cell",
             f"- **label map**: {merge.map_line()}", f"- **classes left out**: {merge.left_out_line()}",
             "- **cross-corpus cells**: one fold: trained on the named corpora, tested on every utterance of these "
             "classes in the test corpus; speaker-independent (disjoint corpora); validation = held-out speakers of "
             "each training corpus, never the test corpus"]
    lines += [f"- **in-corpus, {t}**: {cells[t, 'in-corpus'][0]['protocol']['protocol']}" for t in names]
    proto = cells[names[0], "in-corpus"][0]["protocol"]
    lines += [f"- **{k}**: {proto[k]}" for k in ("seeds", "features", "machine") if k in proto]
    lines.append(f"- **total wall time**: {time.perf_counter() - t0:.0f} s; runs in `{out}/<test>/`")
    head = [f"trained on {s}" if s != "others" else "trained on the others together" for s in sources]
    lines += ["", "UA % on the test corpus. In-corpus: mean ± std over its speaker-independent folds, and pooled over "
              "its test utterances; trained on another corpus: one fold (mean over seeds).", "",
              "| method | upstream | test corpus | in-corpus UA | in-corpus pooled UA | " + " | ".join(head) + " |",
              "|---|---|---|---|---|" + "---|" * len(sources)]
    table = []
    for i, r0 in enumerate(cells[names[0], "in-corpus"]):
        for test in names:
            ua, pooled = _ua(cells[test, "in-corpus"][i])
            cross = {s: cells[test, s][i]["UA"]["mean"] for s in sources if (test, s) in cells}
            lines.append(f"| {_entry(r0)} | {r0['upstream'] or '-'} | {test} | {fmt_pm(ua)} | {100 * pooled:.2f} | "
                         + " | ".join(f"{100 * cross[s]:.2f}" if s in cross else "—" for s in sources) + " |")
            table.append({"entry": r0["entry"], "upstream": r0["upstream"], "test": test, "in_corpus_UA": ua,
                          "in_corpus_pooled_UA": pooled, "cross_UA": cross,
                          "run_dirs": {s: cells[test, s][i]["run_dir"] for s in ["in-corpus", *sources]
                                       if (test, s) in cells}})
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "benchmark.md", md)
    atomic_write_text(out / "benchmark.json", json.dumps({"corpora": names, "merge": merge.to_dict(),
                                                          "identical_folds": same_all, "rows": table}, indent=2))
    print(md)
    return 0 if same_all else 1
