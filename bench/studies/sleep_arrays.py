#!/usr/bin/env python3
"""Sleep-EDF per-epoch features as renflow arrays (the data of the issue-3 sleep experiments and
the issue-4 sleep studies).

Reads ../shared/data/sleep-edf/features/*.npz (16 nights of 8 subjects; keys X: 72 features per
30 s epoch, y: stage 0..4 = W, N1, N2, N3, REM) and writes to OUT:
  Xn.npy    float32, each night's features robust-standardised per column, (x - median) /
            (IQR / 1.349) (no labels used)
  y.npy     int32 stages          subj.npy  int32 subject (SC4<ss>... -> ss)
  rec.npy   int32 night index (0..15, in file-name order; epochs of a night in temporal order)
Usage: python3 bench/studies/sleep_arrays.py [--shared ../shared/data] --out DIR
"""
import argparse
import glob
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "..", "shared", "data"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.shared, "sleep-edf", "features", "*.npz")))
    if len(files) != 16:
        sys.exit("%s: expected 16 nights of Sleep-EDF features, found %d" % (a.shared, len(files)))
    xs, ys, ss, rs = [], [], [], []
    for r, f in enumerate(files):
        d = np.load(f)
        x = d["X"].astype(np.float64)
        med = np.median(x, axis=0)
        q75, q25 = np.percentile(x, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349  # the IQR of a normal distribution is 1.349 sd
        scale[scale <= 0] = 1.0
        xs.append(((x - med) / scale).astype(np.float32))
        ys.append(d["y"].astype(np.int32))
        ss.append(np.full(len(x), int(os.path.basename(f)[3:5]), np.int32))
        rs.append(np.full(len(x), r, np.int32))
    os.makedirs(a.out, exist_ok=True)
    for name, parts in (("Xn", xs), ("y", ys), ("subj", ss), ("rec", rs)):
        np.save(os.path.join(a.out, name + ".npy"), np.concatenate(parts))
    print("%s: %d epochs, %d nights, %d subjects" % (a.out, sum(len(y) for y in ys), len(files), len(set(np.concatenate(ss)))))


if __name__ == "__main__":
    main()
