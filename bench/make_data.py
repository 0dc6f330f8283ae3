#!/usr/bin/python3
"""Writes the benchmark data sets as float32 .npy files (rows = examples) into a directory.

Data sets (NAME_train.npy, NAME_val.npy, NAME_test.npy for each):
  synth8, synth14, synth72  synthetic Gaussian mixtures (D = 8, 14, 72): 20000 train,
                            2000 validation, 5000 test rows, fixed seed per D.
  eeg                       UCI EEG Eye State (14 numeric channels; the class column is
                            dropped). Rows whose robust z-score |x - median| / (1.4826 MAD)
                            exceeds 20 in any column are removed (the file has a few huge
                            spikes); then a seeded 80/20 train/test split, and 10% of the train
                            part is held out as the validation set.
  sleep                     Sleep-EDF spectral features (72 columns, key X of
                            ../shared/data/sleep-edf/features/*.npz): the 16 nights pooled, a
                            seeded 80/20 train/test split of the 30-s epochs, and 10% of the train
                            part held out for validation. (A subject-wise split, nights 1-12 vs
                            13-16, makes the mean test NLL meaningless for comparing
                            implementations: a few test epochs of the unseen subjects lie far
                            outside the training range, and one of them alone contributed about
                            1e7 nats, so the mean was decided by that row. With --sleep-split
                            subject that split is written instead.)

A manifest, datasets.json, lists every set with its dimension and row counts.

usage: /usr/bin/python3 bench/make_data.py OUT_DIR [--shared DIR] [--only NAME[,NAME...]]
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

SEED = 20240611
OUTLIER_Z = 20.0


def gaussian_mixture(D, n_total, seed, n_comp=8):
    """Draws n_total rows from a fixed random mixture of n_comp full-covariance Gaussians."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_comp, 2.0))
    means = rng.normal(0.0, 2.5, size=(n_comp, D))
    chols = []
    for _ in range(n_comp):
        A = rng.normal(0.0, 1.0, size=(D, D)) / np.sqrt(D)
        cov = A @ A.T + 0.05 * np.eye(D)
        chols.append(np.linalg.cholesky(cov))
    comp = rng.choice(n_comp, size=n_total, p=weights)
    eps = rng.normal(size=(n_total, D))
    x = np.empty((n_total, D))
    for c in range(n_comp):
        idx = comp == c
        x[idx] = means[c] + eps[idx] @ chols[c].T
    # a per-dimension affine change so that the columns have different scales and offsets,
    # which exercises the standardisation
    scale = np.exp(rng.normal(0.0, 1.0, size=D))
    shift = rng.normal(0.0, 10.0, size=D)
    return x * scale + shift


def read_arff_numeric(path):
    """Numeric attributes of an ARFF file as a float64 matrix (nominal columns dropped)."""
    numeric = []
    rows = []
    in_data = False
    with open(path, "r", encoding="utf-8", errors="replace") as fp:
        for line in fp:
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            if not in_data:
                low = s.lower()
                if low.startswith("@attribute"):
                    parts = s.split(None, 2)
                    typ = parts[2].strip().lower() if len(parts) > 2 else ""
                    numeric.append(typ in ("numeric", "real", "integer"))
                elif low.startswith("@data"):
                    in_data = True
                continue
            vals = s.split(",")
            if len(vals) != len(numeric):
                raise ValueError("%s: data row with %d fields, expected %d" % (path, len(vals), len(numeric)))
            rows.append([float(v) for v, keep in zip(vals, numeric) if keep])
    return np.asarray(rows, dtype=np.float64)


def robust_outliers(x, threshold):
    """Boolean mask of rows whose robust z-score exceeds threshold in any column
    (same rule as rf_outlier_rows: median, 1.4826 * MAD, std when MAD is 0)."""
    med = np.median(x, axis=0)
    sigma = 1.4826 * np.median(np.abs(x - med), axis=0)
    sd = x.std(axis=0)
    sigma = np.where(sigma > 0, sigma, sd)
    z = np.abs(x - med) / np.where(sigma > 0, sigma, np.inf)
    return (z > threshold).any(axis=1)


def holdout(x, frac, rng):
    """Seeded split: a fraction frac of the rows (shuffled) is returned second."""
    perm = rng.permutation(len(x))
    k = int(np.floor(frac * len(x)))
    return x[perm[k:]], x[perm[:k]]


def save(out, name, parts, manifest, note):
    D = parts["train"].shape[1]
    entry = {"dim": int(D), "note": note}
    for split, arr in parts.items():
        path = os.path.join(out, "%s_%s.npy" % (name, split))
        np.save(path, np.ascontiguousarray(arr, dtype=np.float32))
        entry[split] = int(arr.shape[0])
    manifest[name] = entry
    print("%-8s D=%-3d train %6d  val %5d  test %6d   %s" % (name, D, entry["train"], entry["val"], entry["test"], note))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.normpath(os.path.join(here, "..", "..", "shared", "data")),
                    help="folder of the shared data sets (default: ../shared/data next to the repository)")
    ap.add_argument("--sleep-split", choices=("pooled", "subject"), default="pooled",
                    help="sleep: seeded 80/20 split of the pooled nights (default) or nights 1-12 vs 13-16")
    ap.add_argument("--only", default="", help="comma-separated subset of synth8,synth14,synth72,eeg,sleep")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    want = set(s for s in args.only.split(",") if s) or {"synth8", "synth14", "synth72", "eeg", "sleep"}
    man_path = os.path.join(args.out, "datasets.json")
    manifest = {}
    if os.path.exists(man_path):
        with open(man_path) as fp:
            manifest = json.load(fp)

    for D in (8, 14, 72):
        name = "synth%d" % D
        if name not in want:
            continue
        x = gaussian_mixture(D, 27000, SEED + D)
        save(args.out, name, {"train": x[:20000], "val": x[20000:22000], "test": x[22000:]}, manifest,
             "8-component Gaussian mixture, seed %d" % (SEED + D))

    if "eeg" in want:
        path = os.path.join(args.shared, "uci-eeg-eye-state", "eeg-eye-state.arff")
        x = read_arff_numeric(path)
        if x.shape[1] != 14:
            sys.exit("%s: expected 14 numeric columns, found %d" % (path, x.shape[1]))
        bad = robust_outliers(x, OUTLIER_Z)
        print("eeg: dropped %d of %d rows with a robust z-score above %g" % (int(bad.sum()), len(x), OUTLIER_Z))
        x = x[~bad]
        rng = np.random.default_rng(SEED)
        trainval, test = holdout(x, 0.2, rng)
        train, val = holdout(trainval, 0.1, rng)
        save(args.out, "eeg", {"train": train, "val": val, "test": test}, manifest,
             "UCI EEG Eye State, %d outlier rows dropped, seeded 80/20 split" % int(bad.sum()))

    if "sleep" in want:
        files = sorted(glob.glob(os.path.join(args.shared, "sleep-edf", "features", "*.npz")))
        if len(files) != 16:
            sys.exit("sleep-edf features: expected 16 nights, found %d" % len(files))
        nights = [np.load(f)["X"].astype(np.float64) for f in files]
        rng = np.random.default_rng(SEED + 1)
        if args.sleep_split == "subject":
            trainval, test = np.concatenate(nights[:12]), np.concatenate(nights[12:])
            note = "Sleep-EDF features: nights 1-12 (%s..%s) train, 13-16 test" % (
                os.path.basename(files[0])[:6], os.path.basename(files[11])[:6])
        else:
            trainval, test = holdout(np.concatenate(nights), 0.2, rng)
            note = "Sleep-EDF features: 16 nights pooled, seeded 80/20 split"
        train, val = holdout(trainval, 0.1, rng)
        save(args.out, "sleep", {"train": train, "val": val, "test": test}, manifest, note)

    with open(man_path, "w") as fp:
        json.dump(manifest, fp, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
