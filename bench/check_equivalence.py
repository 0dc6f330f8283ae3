#!/usr/bin/python3
"""Checks that bench/torch_flows.py builds exactly renflow's models: for every flow type, trains a
small renflow model for one epoch (so that no parameter is at its initial value), loads the .rf
file into the PyTorch reference (bench/torch_flows.load_rf: same parameters, LU permutation and
signs) and compares, row by row,
  log p(x)   renflow eval --per-sample   vs  the reference's log_prob (float64),
  z = f(x)   renflow encode              vs  the reference's forward,
  x = f^-1(z) renflow decode (z ~ N(0, I)) vs the reference's inverse.
Any difference beyond float32 round-off means the two implementations disagree about the model.

usage: /usr/bin/python3 bench/check_equivalence.py [--renflow build/renflow] [--data DIR] [--set eeg]
       [--flows realnvp,glow,...] [--blocks 3] [--hidden 32]
"""
import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_flows as tf  # noqa: E402


def sh(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()[-500:]))
    return r.stdout


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renflow", default=os.path.join(root, "build", "renflow"))
    ap.add_argument("--data", default=os.path.join(root, "build", "bench", "data"))
    ap.add_argument("--set", default="eeg", help="data set name (DATA/NAME_train.npy, _val, _test)")
    ap.add_argument("--flows", default=",".join(tf.FLOWS))
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--rows", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tr, va, te = (os.path.join(args.data, "%s_%s.npy" % (args.set, s)) for s in ("train", "val", "test"))
    ok = True
    print("%-8s %14s %14s %14s %14s" % ("flow", "max|dlogp|", "max rel dlogp", "max|dz|", "max|dx|/(1+|x|)"))
    with tempfile.TemporaryDirectory() as tmp:
        x = np.load(te)[:args.rows].astype(np.float32)
        xp = os.path.join(tmp, "x.npy")
        np.save(xp, x)
        zs = np.random.default_rng(7).standard_normal((min(args.rows, 512), x.shape[1])).astype(np.float32)
        zp = os.path.join(tmp, "zs.npy")
        np.save(zp, zs)
        for flow in args.flows.split(","):
            mp = os.path.join(tmp, flow + ".rf")
            sh([args.renflow, "train", "--data", tr, "--val", va, "--flow", flow, "--blocks", str(args.blocks),
                "--hidden", str(args.hidden), "--epochs", "1", "--threads", "1", "--seed", "3", "--out", mp,
                "--quiet"])
            lpp, zo, xo = (os.path.join(tmp, flow + s) for s in ("_lp.npy", "_z.npy", "_x.npy"))
            sh([args.renflow, "eval", "--data", xp, "--per-sample", lpp, "--threads", "1", mp])
            sh([args.renflow, "encode", "--data", xp, "--out", zo, "--threads", "1", mp])
            sh([args.renflow, "decode", "--data", zp, "--out", xo, "--threads", "1", mp])
            m = tf.load_rf(mp).double()
            with torch.no_grad():
                xt = torch.from_numpy(x).double()
                lp_t = m.log_prob(xt).numpy()
                z_t = m(xt)[0].numpy()
                x_t = m.inverse(torch.from_numpy(zs).double()).numpy()
            lp_r = np.load(lpp).astype(np.float64)
            z_r = np.load(zo).astype(np.float64)
            x_r = np.load(xo).astype(np.float64)
            dlp = np.abs(lp_r - lp_t)
            rel = dlp / (1 + np.abs(lp_t))
            dz = np.abs(z_r - z_t)
            dx = np.abs(x_r - x_t) / (1 + np.abs(x_t))
            good = rel.max() < 1e-4 and dz.max() < 1e-3 and dx.max() < 1e-3
            ok = ok and good
            print("%-8s %14.3e %14.3e %14.3e %14.3e  %s" % (flow, dlp.max(), rel.max(), dz.max(), dx.max(),
                                                           "ok" if good else "MISMATCH"))
    print("renflow and the PyTorch reference compute the same models" if ok else "MISMATCH between renflow and the reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
