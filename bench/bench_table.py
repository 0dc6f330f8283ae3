#!/usr/bin/python3
"""Collects the per-run results written by bench/run_bench.sh and prints the side-by-side
renflow vs PyTorch table (plain text on stdout, Markdown into a file).

Each run directory RESULTS/runs/<name>/ holds:
  meta.json        data set, D, flow, hidden, blocks, batch, threads, epochs
  rf_train.json    renflow train --json        rf_train.rss   peak RSS in KB (/usr/bin/time %M)
  rf_eval.json     renflow eval --json         rf_sample.json renflow sample --json
  torch.json       bench/torch_flows.py --json torch.rss      peak RSS in KB (/usr/bin/time %M)
RESULTS/sgemm.jsonl (optional) holds bench/sgemm_rate output, used for the GEMM-efficiency table.

usage: /usr/bin/python3 bench/bench_table.py RESULTS_DIR [--markdown FILE]
"""
import argparse
import glob
import json
import math
import os


def load_json(path):
    try:
        with open(path) as fp:
            txt = fp.read().strip()
        return json.loads(txt) if txt else None
    except (OSError, ValueError):
        return None


def load_kb(path):
    try:
        with open(path) as fp:
            lines = [l.strip() for l in fp if l.strip()]
        return float(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "rate":
        return "%.0f" % v if v >= 100 else "%.1f" % v
    if kind == "nll":
        return "%.3f" % v
    if kind == "mb":
        return "%.0f" % v
    if kind == "x":
        return "%.2fx" % v
    if kind == "pct":
        return "%.1f%%" % (100 * v)
    if kind == "gf":
        return "%.2f" % v
    return str(v)


def gemm_macs_per_example(flow, D, hidden, blocks, n_hidden=2, bins=8):
    """Multiply-adds of the dense products of one forward pass per example (conditioners and LU)."""
    nt_aff, nt_rqs = 2, 3 * bins - 1

    def mlp(n_in, n_out):
        return n_in * hidden + (n_hidden - 1) * hidden * hidden + hidden * n_out

    total = 0
    for b in range(blocks):
        parity = b % 2 if flow == "realnvp" else 0
        da = len([i for i in range(D) if i % 2 == parity])
        db = D - da
        if flow == "realnvp":
            total += mlp(da, db * nt_aff)
        elif flow == "glow":
            total += D * D + mlp(da, db * nt_aff)
        elif flow == "maf":
            total += mlp(D, D * nt_aff)
        elif flow == "nsf":
            total += D * D + mlp(da, db * nt_rqs)
        elif flow == "nsf-ar":
            total += D * D + mlp(D, D * nt_rqs)
    return total


COLS = [("data set", "s"), ("D", "s"), ("flow", "s"), ("hidden", "s"), ("blocks", "s"),
        ("renflow samples/s", "rate"), ("torch samples/s", "rate"), ("speed-up", "x"),
        ("renflow test NLL", "nll"), ("torch test NLL", "nll"),
        ("renflow peak RSS MB", "mb"), ("torch peak RSS MB", "mb"),
        ("renflow sampling/s", "rate"), ("torch sampling/s", "rate")]


def repeats(d, stem, ext):
    """Files stem.ext, stem.2.ext, stem.3.ext, ... of the repeats of one run."""
    first = os.path.join(d, stem + "." + ext)
    more = sorted(glob.glob(os.path.join(d, stem + ".[0-9]*." + ext)),
                  key=lambda p: int(os.path.basename(p)[len(stem) + 1:].split(".")[0]))
    return ([first] if os.path.exists(first) else []) + more


def best(values):
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def collect(results):
    rows = []
    for d in sorted(glob.glob(os.path.join(results, "runs", "*"))):
        meta = load_json(os.path.join(d, "meta.json"))
        if not meta:
            continue
        rts = [load_json(p) or {} for p in repeats(d, "rf_train", "json")]
        rss = [load_json(p) or {} for p in repeats(d, "rf_sample", "json")]
        tjs = [load_json(p) or {} for p in repeats(d, "torch", "json")]
        rt = rts[0] if rts else {}
        tj = tjs[0] if tjs else {}
        re_ = load_json(os.path.join(d, "rf_eval.json")) or {}
        rf_rss = load_kb(os.path.join(d, "rf_train.rss")) if rt else None
        t_rss = num(tj.get("peak_rss_train_mb"))
        if t_rss is None and tj:
            kb = load_kb(os.path.join(d, "torch.rss"))
            t_rss = kb / 1024 if kb else None
        r = dict(meta)
        r["repeats"] = max(len(rts), len(tjs))
        r["rf_sps"] = best(num(j.get("samples_per_sec")) for j in rts)
        r["rf_sps_wall"] = best(num(j.get("samples_per_sec_wall")) for j in rts)
        r["t_sps_wall"] = best(num(j.get("samples_per_sec_wall")) for j in tjs)
        r["t_sps"] = best(num(j.get("samples_per_sec")) for j in tjs)
        r["speedup"] = r["rf_sps"] / r["t_sps"] if r["rf_sps"] and r["t_sps"] else None
        r["rf_nll"] = num(re_.get("nll_nats"))
        r["t_nll"] = num(tj.get("test_nll"))
        r["rf_rss"] = rf_rss / 1024 if rf_rss else None
        r["t_rss"] = t_rss
        r["rf_smp"] = best(num(j.get("samples_per_sec")) for j in rss)
        r["t_smp"] = best(num(j.get("sampling_per_sec")) for j in tjs)
        r["t_base"] = num(tj.get("rss_after_import_mb"))
        r["rf_epochs"] = rt.get("epochs_run")
        r["t_epochs"] = tj.get("epochs_run")
        rows.append(r)
    order = {"synth8": 0, "synth14": 1, "eeg": 2, "synth72": 3, "sleep": 4}
    flows = {"realnvp": 0, "glow": 1, "maf": 2, "nsf": 3, "nsf-ar": 4}
    rows.sort(key=lambda r: (r["dim"], order.get(r["dataset"], 9), r["dataset"], r["hidden"], r["blocks"],
                             flows.get(r["flow"], 9)))
    return rows


def cells(r):
    vals = [r["dataset"], r["dim"], r["flow"], r["hidden"], r["blocks"], r["rf_sps"], r["t_sps"], r["speedup"],
            r["rf_nll"], r["t_nll"], r["rf_rss"], r["t_rss"], r["rf_smp"], r["t_smp"]]
    return [fmt(v, k) for v, (_, k) in zip(vals, COLS)]


def sgemm_rates(results):
    rates = {}
    path = os.path.join(results, "sgemm.jsonl")
    if os.path.exists(path):
        with open(path) as fp:
            for line in fp:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                rates[(j["batch"], j["hidden"])] = j["step_gflops"]
    return rates


def text_table(header, body):
    w = [max(len(str(x)) for x in col) for col in zip(header, *body)] if body else [len(h) for h in header]
    line = lambda c: "  ".join(str(x).rjust(n) if i >= 3 else str(x).ljust(n) for i, (x, n) in enumerate(zip(c, w)))
    return "\n".join([line(header), "  ".join("-" * n for n in w)] + [line(c) for c in body])


def md_table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i >= 3 else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(x) for x in c) + " |" for c in body]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--markdown", help="write the tables as Markdown to this file")
    args = ap.parse_args()
    rows = collect(args.results)
    header = [c for c, _ in COLS]
    body = [cells(r) for r in rows]
    settings = load_json(os.path.join(args.results, "settings.json")) or {}

    rates = sgemm_rates(args.results)
    g_header = ["data set", "D", "flow", "hidden", "blocks", "GEMM MFLOP/example", "renflow GEMM GFLOP/s",
                "OpenBLAS SGEMM GFLOP/s", "fraction"]
    g_body = []
    for r in rows:
        macs = gemm_macs_per_example(r["flow"], r["dim"], r["hidden"], r["blocks"])
        flops = 6.0 * macs  # forward + two backward products, 2 flops per multiply-add
        eff = flops * r["rf_sps"] / 1e9 if r["rf_sps"] else None
        peak = rates.get((r.get("batch"), r["hidden"]))
        g_body.append([r["dataset"], r["dim"], r["flow"], r["hidden"], r["blocks"], "%.3f" % (flops / 1e6),
                       fmt(eff, "gf"), fmt(peak, "gf"), fmt(eff / peak if eff and peak else None, "pct")])

    loads = [num(r.get("load1")) for r in rows if num(r.get("load1")) is not None]
    bases = sorted(r["t_base"] for r in rows if r.get("t_base"))
    base_txt = "%.0f" % bases[len(bases) // 2] if bases else "?"
    load_txt = ("; 1-minute load average at the start of the runs %.1f-%.1f" % (min(loads), max(loads))) if loads else ""
    desc = ("PyTorch %s, threads %s (PyTorch with OMP_WAIT_POLICY=%s; renflow with the OpenMP defaults and "
            "OPENBLAS_NUM_THREADS=%s), batch %s, epochs %s, lr %s, seed %s%s. "
            "samples/s = training examples per second of training time, i.e. excluding the per-epoch validation and "
            "the model/checkpoint writes, for both (renflow: `samples_per_sec` of `train --json`; torch: "
            "`samples_per_sec` of torch_flows.py); best of %s run(s)%s; test NLL in nats/example in data space (standardisation log-det "
            "included); peak RSS of the training process (renflow: /usr/bin/time; torch: ru_maxrss after "
            "training, includes about %s MB for the Python/torch runtime); sampling/s = %s samples drawn "
            "through the inverse in batches of 1024 (best of the runs)." %
            (settings.get("torch", "?"), settings.get("threads", "?"), settings.get("omp_wait_policy", "?"),
             settings.get("rf_openblas_threads", "?"),
             settings.get("batch", "?"), settings.get("epochs", "?"), settings.get("lr", "?"),
             settings.get("seed", "?"), load_txt, settings.get("repeats", 1),
             "; the wall-clock rates, validation and writes included, are listed below the table"
             if any(r.get("rf_sps_wall") for r in rows) else "", base_txt,
             settings.get("n_samples", "?")))
    print(desc)
    print()
    print(text_table(header, body))
    if rates:
        print()
        print("GEMM efficiency (dense products of a training step, 6 x multiply-adds per example, vs OpenBLAS "
              "SGEMM at batch x hidden x hidden, the better of threaded and one call per core):")
        print(text_table(g_header, g_body))
    w_header = ["data set", "D", "flow", "hidden", "blocks", "renflow samples/s (wall)", "torch samples/s (wall)",
                "speed-up (wall)"]
    w_body = [[r["dataset"], r["dim"], r["flow"], r["hidden"], r["blocks"], fmt(r["rf_sps_wall"], "rate"),
               fmt(r["t_sps_wall"], "rate"),
               fmt(r["rf_sps_wall"] / r["t_sps_wall"] if r["rf_sps_wall"] and r["t_sps_wall"] else None, "x")]
              for r in rows]
    have_wall = any(r["rf_sps_wall"] for r in rows)
    if have_wall:
        print()
        print("Wall-clock training rates (validation each epoch and model/checkpoint writes included):")
        print(text_table(w_header, w_body))
    if args.markdown:
        with open(args.markdown, "w") as fp:
            fp.write("<!-- generated by bench/run_bench.sh on %s -->\n\n" % settings.get("date", "?"))
            fp.write("Machine: %s. %s\n\n" % (settings.get("machine", "?"), desc))
            fp.write(md_table(header, body) + "\n")
            if rates:
                fp.write("\nGEMM efficiency: the dense products of one training step (forward plus the two "
                         "backward products, 6 flops per multiply-add of the conditioners and LU layers) times "
                         "renflow's samples/s, against OpenBLAS's own SGEMM rate at batch x hidden x hidden on the "
                         "same number of cores (bench/sgemm_rate.c: the better of one threaded SGEMM call at a time "
                         "and one single-threaded call per core at once). Spline and elementwise work is not "
                         "counted.\n\n")
                fp.write(md_table(g_header, g_body) + "\n")
            if have_wall:
                fp.write("\nWall-clock training rates (examples per second of the whole epoch loop: per-epoch "
                         "validation and model/checkpoint writes included):\n\n")
                fp.write(md_table(w_header, w_body) + "\n")
        print("\nMarkdown table written to %s" % args.markdown)


if __name__ == "__main__":
    main()
