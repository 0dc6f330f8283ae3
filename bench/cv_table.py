#!/usr/bin/env python3
"""Markdown table of `renflow cv --json` results: fold mean ± sd and pooled values.

    python3 bench/cv_table.py [--key=macro_f1] OUT/*.json

--key picks the metric of the pooled and per-fold columns (default balanced_accuracy); the
pooled kappa is added with --key=macro_f1.
"""
import json
import os
import sys

KEYS = ["balanced_accuracy", "macro_f1", "kappa", "accuracy"]


def row(path, key):
    with open(path) as f:
        d = json.load(f)
    name = os.path.splitext(os.path.basename(path))[0]
    cells = ["%.3f ± %.3f" % (d["mean"][k], d["sd"][k]) for k in KEYS]
    folds = " / ".join("%.3f" % f[key] for f in d["per_fold"])
    pooled = "%.3f" % d["pooled"][key]
    if key == "macro_f1":
        pooled += " | %.3f" % d["pooled"]["kappa"]
    return "| %s | %s | %s | %s |" % (name, " | ".join(cells), pooled, folds)


def main(paths):
    key = "balanced_accuracy"
    if paths and paths[0].startswith("--key="):
        key = paths.pop(0)[len("--key="):]
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    short = {"balanced_accuracy": "bal.", "macro_f1": "macro-F1", "kappa": "kappa", "accuracy": "acc."}.get(key, key)
    if key == "macro_f1":
        print("| row | balanced acc. | macro-F1 | kappa | accuracy | pooled macro-F1 | pooled kappa | per-fold macro-F1 |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| row | balanced acc. | macro-F1 | kappa | accuracy | pooled %s | per-fold %s |" % (short, short))
        print("|---|---|---|---|---|---|---|")
    for p in paths:
        try:
            print(row(p, key))
        except (OSError, ValueError, KeyError) as e:
            print("| %s | unreadable: %s |" % (p, e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
