#!/usr/bin/env python3
"""Key numbers of renflow certificates as a Markdown table (for bench/certify/RESULTS.md).

For each certificate: test NLL of the model and of each reference, accuracy / macro-F1 / kappa /
ECE for classifiers, the compound, quality and resource ratings, every guarantee check's status
(and for the log-determinant the per-point counts), the training time and the energy method.
Usage: python3 bench/certify/summarize.py CERT.json|DIR ...
"""
import json
import os
import sys


def num(v, fmt="%.4g"):
    return "—" if v is None else fmt % v


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def load(p):
    if os.path.isdir(p):
        p = os.path.join(p, "certificate.json")
    with open(p) as f:
        return p, json.load(f)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        path, c = load(arg)
        m = c["metrics"]
        name = get(c, "model", "path") or path
        print("### %s\n" % os.path.basename(os.path.dirname(os.path.abspath(path))))
        print("model `%s`, test data `%s` (%s rows), D = %s\n" % (
            os.path.basename(name), os.path.basename((get(c, "data", "test", "file", "path") or "").rstrip("/")),
            get(c, "data", "test", "rows"), get(c, "data", "test", "dim")))
        refs = sorted(get(m, "nll", "references") or {})
        print("| metric | model | " + " | ".join(refs) + " | rating (vs %s) |" % get(c, "rating", "reference"))
        print("|---|---|" + "---|" * len(refs) + "---|")
        for k in ["nll", "bits_per_dim", "hdr_calibration_error", "accuracy", "macro_f1", "kappa", "ece",
                  "n_params", "train_seconds", "latency_sample", "peak_memory", "energy_log_density"]:
            if k not in m:
                continue
            e = m[k]
            r = e.get("references") or {}
            print("| %s | %s | %s | %s |" % (k, num(e.get("value")), " | ".join(num(r.get(x)) for x in refs),
                                             e.get("rating") or "—"))
        rm = get(c, "rating", "model") or {}
        print("\ncompound rating **%s** (quality %s, resources %s)%s; references: %s\n" % (
            rm.get("compound_rating"), rm.get("quality_rating"), rm.get("resource_rating"),
            " — capped by guarantees" if rm.get("capped_by_guarantees") else "",
            ", ".join("%s %s" % (k, (v or {}).get("compound_rating")) for k, v in sorted((get(c, "rating", "references") or {}).items()))))
        g = c["guarantees"]
        for ch in g["checks"]:
            print("- %s: **%s** (%s %s, threshold %s)" % (ch["name"], ch["status"], num(ch.get("value")), ch["unit"],
                                                          num(ch.get("threshold"))))
        ld = g["log_determinant"]
        if ld.get("points_pass") is not None:
            print("- log-det points: %d pass, %d fail, %d not verified (resolved: %d whole flow, %d layer by layer); "
                  "max error bound %s nats, raw whole-flow |model - FD| max %s" % (
                      ld["points_pass"], ld["points_fail"], ld["points_not_verified"], ld["points_resolved_whole_flow"],
                      ld["points_resolved_by_layers"], num(ld.get("max_error_bound")), num(ld.get("max_abs_error"))))
        print("- guarantees pass: %s, complete: %s" % (g["pass"], g["complete"]))
        print("- energy method: %s (measured: %s)" % (get(c, "energy", "method"), get(c, "energy", "measured")))
        print("- training time: %s (%s)\n" % (num(get(m, "train_seconds", "value")), get(m, "train_seconds", "method")))


if __name__ == "__main__":
    main()
