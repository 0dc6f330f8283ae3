#!/usr/bin/env python3
"""Markdown table of `renflow cv --json` results: fold mean ± sd and pooled values.

    python3 bench/cv_table.py OUT/*.json
"""
import json
import os
import sys

KEYS = ["balanced_accuracy", "macro_f1", "kappa", "accuracy"]


def row(path):
    with open(path) as f:
        d = json.load(f)
    name = os.path.splitext(os.path.basename(path))[0]
    cells = ["%.3f ± %.3f" % (d["mean"][k], d["sd"][k]) for k in KEYS]
    folds = " / ".join("%.3f" % f["balanced_accuracy"] for f in d["per_fold"])
    return "| %s | %s | %.3f | %s |" % (name, " | ".join(cells), d["pooled"]["balanced_accuracy"], folds)


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print("| row | balanced acc. | macro-F1 | kappa | accuracy | pooled bal. | per-fold bal. |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        try:
            print(row(p))
        except (OSError, ValueError, KeyError) as e:
            print("| %s | unreadable: %s |" % (p, e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
