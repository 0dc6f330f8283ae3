#!/usr/bin/python3
"""Python reference of `renflow eeg prepare` in label mode, for the EDF -> windows throughput
benchmark (bench/bench_edf.sh). The same steps, with the standard Python tools:

  1. read the EDF(+) file and the selected channels in physical units (MNE-Python's
     mne.io.read_raw_edf, Debian python3-mne; or, with --reader numpy, a minimal numpy EDF reader
     written here: header fields, int16 records, digital -> physical; a truncated file keeps its
     complete records, as renflow does without --strict-edf);
     channels: the EEG channels of the first recording (the labels renflow's is_non_eeg keeps:
     no ECG/EKG/EOG/EMG/RESP/TEMP/EVENT/MARKER/STATUS/A2-A1/SAO2/PLETH, no annotation signal);
  2. zero-phase Butterworth band-pass (scipy.signal.butter(order, [hp, lp], 'bandpass',
     output='sos') + sosfiltfilt with renflow's padding: even reflection for a DC-blocking
     cascade, pad length max(scipy's default, 6 time constants of the slowest pole));
  3. polyphase resampling to --rate (scipy.signal.resample_poly, up/down in lowest terms, Kaiser
     window beta 5, half-length 10 x max(up, down) as renflow's defaults);
  4. robust standardisation per recording and channel: (x - median) / max(1.4826 MAD, 1e-6);
  5. windows of --window seconds with hop = window, k * hop for k = 0 .. floor((dur - W)/hop);
  6. rejection of windows with |z| > --reject-z (or non-finite values) in any channel;
  7. windows.npy (N x C x T float32), labels.npy, subjects.npy, recordings.npy, manifest.json.
The filter pairing into sections, the resampler's edge handling and branch normalisation differ
in detail from renflow's, so the windows agree closely but not bit for bit (--compare reports by
how much); the work done is the same.

usage: /usr/bin/python3 bench/edf_reference.py --recordings LIST.csv --out DIR
           [--rate 64] [--window 4] [--highpass 0.5] [--lowpass 45] [--order 4] [--reject-z 20]
           [--reader mne|numpy] [--jobs N] [--compare RENFLOW_DIR] [--json]
LIST.csv: header file,subject,label (paths relative to the list), as renflow eeg prepare.
"""
import argparse
import csv
import json
import math
import os
import time
from fractions import Fraction

T_START = time.perf_counter()
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per worker process (--jobs sets the parallelism)

import numpy as np  # noqa: E402
import scipy.signal as ss  # noqa: E402

NON_EEG = ("ECG", "EKG", "EOG", "EMG", "RESP", "TEMP", "EVENT", "MARKER", "STATUS", "A2-A1", "SAO2", "PLETH")


def is_eeg(label):
    up = label.upper()
    return "ANNOTATION" not in up and not any(b in up for b in NON_EEG)


# ---------------------------------------------------------------- readers

def read_numpy(path, channels=None):
    """(labels, rate, data C x n float64 in physical units) of an EDF/EDF+ file."""
    with open(path, "rb") as fp:
        buf = fp.read()
    hdr_bytes = int(buf[184:192])
    n_rec = int(buf[236:244])
    dur = float(buf[244:252])
    ns = int(buf[252:256])

    def field(off, width):
        return [buf[off + i * width:off + (i + 1) * width].decode("latin-1").strip() for i in range(ns)]

    o = 256
    labels = field(o, 16)
    o += ns * (16 + 80 + 8)
    pmin = np.array(field(o, 8), float); o += ns * 8
    pmax = np.array(field(o, 8), float); o += ns * 8
    dmin = np.array(field(o, 8), float); o += ns * 8
    dmax = np.array(field(o, 8), float); o += ns * 8
    o += ns * 80
    spr = np.array(field(o, 8), int)
    rec_len = int(spr.sum())
    avail = (len(buf) - hdr_bytes) // (2 * rec_len)
    if n_rec < 0 or n_rec > avail:
        n_rec = avail  # truncated (or -1 in the header): the complete records
    rec = np.frombuffer(buf, dtype="<i2", count=n_rec * rec_len, offset=hdr_bytes).reshape(n_rec, rec_len)
    offs = np.concatenate([[0], np.cumsum(spr)])
    pick = [labels.index(c) for c in channels] if channels else [i for i, l in enumerate(labels) if is_eeg(l)]
    rate = spr[pick[0]] / dur
    out = np.empty((len(pick), n_rec * spr[pick[0]]))
    for r, i in enumerate(pick):
        if spr[i] != spr[pick[0]]:
            raise ValueError("%s: channels of different rates" % path)
        g = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i])
        out[r] = (rec[:, offs[i]:offs[i + 1]].reshape(-1) - dmin[i]) * g + pmin[i]
    return [labels[i] for i in pick], rate, out


def read_mne(path, channels=None):
    import mne
    mne.set_log_level("ERROR")
    raw = mne.io.read_raw_edf(path, preload=False, verbose="ERROR")
    names = raw.ch_names
    pick = [names.index(c) for c in channels] if channels else [i for i, l in enumerate(names) if is_eeg(l)]
    data = raw.get_data(picks=pick, units="uV")  # physical units of the EEG channels (uV)
    return [names[i] for i in pick], raw.info["sfreq"], data


# ---------------------------------------------------------------- processing

def padlen(sos):
    """rf_sosfiltfilt_padlen: max(scipy's default, 6 time constants of the slowest pole)."""
    zb = int((sos[:, 2] == 0).sum())
    za = int((sos[:, 5] == 0).sum())
    pad = 3 * (2 * len(sos) + 1 - min(zb, za))
    rmax = max(np.abs(np.roots([1, s[4] / s[3], s[5] / s[3]])).max() for s in sos)
    if rmax > 0:
        tau = -1 / math.log(rmax) if rmax < 1 else 1e9
        pad = max(pad, int(math.ceil(6 * min(tau, 1e9))))
    return pad


def process(job):
    """One recording -> (windows float32 N x C x T, n_in_samples, seconds by step)."""
    path, channels, a = job
    t = [time.perf_counter()]
    read = read_mne if a["reader"] == "mne" else read_numpy
    _, fs, x = read(path, channels)
    t.append(time.perf_counter())
    sos = ss.butter(a["order"], [a["highpass"], a["lowpass"]], btype="bandpass", fs=fs, output="sos")
    n = x.shape[1]
    x = ss.sosfiltfilt(sos, x, axis=1, padtype="even", padlen=min(padlen(sos), n - 1))
    t.append(time.perf_counter())
    fr = Fraction(a["rate"] / fs).limit_denominator(1024)
    if fr != 1:
        x = ss.resample_poly(x, fr.numerator, fr.denominator, axis=1, window=("kaiser", 5.0))
    t.append(time.perf_counter())
    med = np.median(x, axis=1, keepdims=True)
    mad = np.median(np.abs(x - med), axis=1, keepdims=True)
    x = (x - med) / np.maximum(1.4826 * mad, 1e-6)
    t.append(time.perf_counter())
    rate, W = a["rate"], a["window"]
    T = int(round(W * rate))
    m = x.shape[1]
    dur = m / rate
    nw = int(math.floor((dur - W) / W + 1e-9)) + 1 if dur >= W else 0
    starts = [int(round(k * W * rate)) for k in range(nw)]
    starts = [s for s in starts if s + T <= m]
    w = np.stack([x[:, s:s + T] for s in starts]) if starts else np.empty((0, x.shape[0], T))
    keep = np.isfinite(w).all((1, 2))
    if a["reject_z"] > 0:
        keep &= (np.abs(w) <= a["reject_z"]).all((1, 2))
    w = w[keep].astype(np.float32)
    t.append(time.perf_counter())
    return w, n, np.diff(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recordings", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rate", type=float, default=64)
    ap.add_argument("--window", type=float, default=4)
    ap.add_argument("--highpass", type=float, default=0.5)
    ap.add_argument("--lowpass", type=float, default=45)
    ap.add_argument("--order", type=int, default=4)
    ap.add_argument("--reject-z", type=float, default=20)
    ap.add_argument("--reader", choices=("mne", "numpy"), default="mne")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes over recordings")
    ap.add_argument("--compare", help="renflow eeg prepare output of the same list: report the differences")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = os.path.dirname(os.path.abspath(args.recordings))
    with open(args.recordings, newline="") as fp:
        rows = list(csv.DictReader(fp))
    files = [r["file"] if os.path.isabs(r["file"]) else os.path.join(base, r["file"]) for r in rows]
    read = read_mne if args.reader == "mne" else read_numpy
    channels = read(files[0])[0]  # the EEG channels of the first recording
    a = {k: getattr(args, k) for k in ("rate", "window", "highpass", "lowpass", "order", "reject_z", "reader")}
    jobs = [(f, channels, a) for f in files]
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            res = pool.map(process, jobs, chunksize=1)
    else:
        res = [process(j) for j in jobs]
    classes = sorted({r["label"] for r in rows})
    subjects = sorted({r["subject"] for r in rows})
    ws = [w for w, _, _ in res]
    x = np.concatenate(ws) if ws else np.empty((0, len(channels), int(round(args.window * args.rate))), np.float32)
    lab = np.concatenate([np.full(len(w), classes.index(r["label"]), np.int32) for w, r in zip(ws, rows)])
    sub = np.concatenate([np.full(len(w), subjects.index(r["subject"]), np.int32) for w, r in zip(ws, rows)])
    rec = np.concatenate([np.full(len(w), i, np.int32) for i, w in enumerate(ws)])
    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "windows.npy"), x)
    np.save(os.path.join(args.out, "labels.npy"), lab)
    np.save(os.path.join(args.out, "subjects.npy"), sub)
    np.save(os.path.join(args.out, "recordings.npy"), rec)
    with open(os.path.join(args.out, "manifest.json"), "w") as fp:
        json.dump({"settings": a, "channels": channels, "class_names": classes, "subjects": subjects,
                   "n_windows": int(len(x)), "recordings": files}, fp, indent=1)
    t1 = time.perf_counter()
    in_bytes = sum(os.path.getsize(f) for f in files)
    steps = np.sum([s for _, _, s in res], 0)
    out = {"impl": "python-" + args.reader, "jobs": args.jobs, "recordings": len(files), "channels": len(channels),
           "windows": int(len(x)), "window_shape": list(x.shape[1:]), "input_bytes": in_bytes,
           "input_samples": int(sum(n for _, n, _ in res)) * len(channels),
           "seconds": t1 - t0, "seconds_with_imports": t1 - T_START,
           "step_seconds": dict(zip(("read", "filter", "resample", "standardise", "windows"), map(float, steps))),
           "mb_per_sec": in_bytes / 1e6 / (t1 - t0), "windows_per_sec": len(x) / (t1 - t0)}
    if args.compare:
        r = np.load(os.path.join(args.compare, "windows.npy"))
        out["renflow_windows"] = int(len(r))
        if r.shape == x.shape:
            d = np.abs(r.astype(np.float64) - x)
            out["compare"] = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                              "corr": float(np.corrcoef(r.ravel(), x.ravel())[0, 1])}
            # the first and last windows of a recording hold the edge effects of filtering/resampling
            rr = np.load(os.path.join(args.compare, "recordings.npy"))
            inner = np.ones(len(rr), bool)
            for i in np.unique(rr):
                k = np.flatnonzero(rr == i)
                inner[k[0]] = inner[k[-1]] = False
            if inner.any():
                out["compare"]["interior_max_abs_diff"] = float(d[inner].max())
                out["compare"]["interior_windows"] = int(inner.sum())
        else:
            out["compare"] = "window counts differ: renflow %s, reference %s" % (r.shape, x.shape)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print("%-20s %s" % (k, v))


if __name__ == "__main__":
    main()
