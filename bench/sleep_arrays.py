#!/usr/bin/env python3
"""Sleep-EDF per-epoch features (../shared/data/sleep-edf/features/*.npz, 16 nights of 8 subjects)
as renflow cv inputs: X.npy (the features in their own units), Xn.npy (each night robustly
standardised per column: median and IQR / 1.349 over the night's epochs; no labels), y.npy (0=W,
1=N1, 2=N2, 3=N3, 4=REM), subj.npy (subject = the 4th digit of SC4sNn), rec.npy (night index;
epochs of a night in temporal order).

    python3 bench/sleep_arrays.py ../shared/data/sleep-edf/features OUTDIR
"""
import glob
import os
import sys

import numpy as np


def main():
    src, out = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(src, "SC4*.npz")))
    if not files:
        sys.exit("%s: no SC4*.npz files" % src)
    X, Xn, y, subj, rec = [], [], [], [], []
    for r, f in enumerate(files):
        z = np.load(f)
        x = z["X"].astype(np.float64)
        med = np.median(x, axis=0)
        q75, q25 = np.percentile(x, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        scale[scale == 0] = 1.0
        X.append(x)
        Xn.append((x - med) / scale)
        y.append(z["y"].astype(np.int32))
        subj.append(np.full(len(x), int(os.path.basename(f)[4]), np.int32))
        rec.append(np.full(len(x), r, np.int32))
    os.makedirs(out, exist_ok=True)
    for name, a in (("X", X), ("Xn", Xn), ("y", y), ("subj", subj), ("rec", rec)):
        a = np.concatenate(a)
        np.save(os.path.join(out, name + ".npy"), a.astype(np.float32) if name.startswith("X") else a)
    print("%d epochs, %d nights, %d subjects -> %s" % (len(np.concatenate(y)), len(files), len(set(np.concatenate(subj))), out))


if __name__ == "__main__":
    main()
