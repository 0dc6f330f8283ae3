#!/usr/bin/python3
"""Checks that bench/torch_tsflow.py computes exactly renflow's time-series flows. Trains nothing in
PyTorch: for each variant it trains a small renflow tsflow (`renflow train --data DIR --epochs 1`, so
that no parameter is at its initial value and the couplings are no longer the identity), loads the
.rf file into the PyTorch model (torch_tsflow.load_rf: same parameters, 1x1 permutations and signs,
class base, standardisation) and compares, row by row on the same windows,
  log p(x)     renflow eval --per-sample (marginal over classes for classifiers)  vs  log_prob,
  log p(x|y)   the same with --labels (classifiers only),
  z = f(x)     renflow encode   vs  forward,
  x = f^-1(z)  renflow decode (z ~ N(0, I))  vs  inverse.
The reference runs in float64, so the differences are renflow's float32 round-off. The relative
difference of log p is |dlogp| / (1 + |logp|) (log p of a 19 x 256 window is about -5000 nats).

usage: /usr/bin/python3 bench/check_tsflow_equivalence.py [--renflow build/renflow]
       [--eegmat DIR] [--sim DIR] [--rows 256] [--epochs 1] [--tmp DIR]
  --eegmat DIR: `renflow eeg prepare` output of eegmat (e.g. 19 x 256 at 64 Hz)
  --sim DIR:    `renflow demo --eeg` output DIR/simulated-eeg (8 x 256)
At least one of them is required; each variant below runs on the data sets given.
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

import torch_tsflow as tt  # noqa: E402

# (name, renflow train flags): the default architecture for the window shape, and variants that
# exercise every option of the layers (spline coupling, class base tied over time or untied,
# kernel / dilation / activation / width / scales)
VARIANTS = [
    ("density-affine", []),
    ("classify-tied", ["--task", "classify"]),
    ("density-spline", ["--coupling", "spline"]),
    ("classify-untied-k3d2-gelu", ["--task", "classify", "--class-tie", "none", "--kernel", "3", "--dilation", "2",
                                   "--act", "gelu"]),
    # (--flow tsflow: with --scales but without --flow, `renflow train` builds its default nsf)
    ("density-tanh-s2-h16", ["--flow", "tsflow", "--act", "tanh", "--scales", "2", "--hidden", "16", "--blocks", "2"]),
]


def sh(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()[-500:]))
    return r.stdout


def coupling_theta_max(m, x):
    """Largest |conditioner output| over the couplings on x: how far they are from the identity."""
    seen = []
    hooks = [c.net.register_forward_hook(lambda mod, i, o: seen.append(o.abs().max().item()))
             for layers in m.scales for c in layers if isinstance(c, tt.Coupling)]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    return max(seen)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renflow", default=os.path.join(root, "build", "renflow"))
    ap.add_argument("--eegmat", help="prepared eegmat directory")
    ap.add_argument("--sim", help="simulated-eeg directory of renflow demo --eeg")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    ap.add_argument("--tmp", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    sets = [(n, d) for n, d in (("eegmat", args.eegmat), ("sim", args.sim)) if d]
    if not sets:
        ap.error("give --eegmat DIR and/or --sim DIR")
    torch.set_num_threads(1)
    want = set(args.variants.split(","))
    ok = True
    print("%-7s %-26s %6s %9s %11s %11s %11s %11s %11s %9s" %
          ("data", "variant", "D", "params", "max|dlogp|", "max rel", "rel |x,y", "max|dz|", "max|dx|rel", "max|th|"))
    with tempfile.TemporaryDirectory() as tmp0:
        tmp = args.tmp or tmp0
        os.makedirs(tmp, exist_ok=True)
        for sname, sdir in sets:
            w = np.load(os.path.join(sdir, "windows.npy"))
            y = np.load(os.path.join(sdir, "labels.npy")).astype(np.int32)
            # rows spread over the whole set (every subject and class), not just the first recordings
            idx = np.linspace(0, w.shape[0] - 1, min(args.rows, w.shape[0])).astype(int)
            x = w[idx].reshape(len(idx), -1).astype(np.float32)
            xp, yp = os.path.join(tmp, sname + "_x.npy"), os.path.join(tmp, sname + "_y.npy")
            np.save(xp, x)
            np.save(yp, y[idx])
            zs = np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
            zp = os.path.join(tmp, sname + "_zs.npy")
            np.save(zp, zs)
            for vname, flags in VARIANTS:
                if vname not in want:
                    continue
                tag = "%s_%s" % (sname, vname)
                mp = os.path.join(tmp, tag + ".rf")
                sh([args.renflow, "train", "--data", sdir, "--epochs", str(args.epochs), "--threads", "2",
                    "--seed", "3", "--out", mp, "--quiet"] + flags)
                lpp, lyp, zo, xo = (os.path.join(tmp, tag + s) for s in ("_lp.npy", "_lpy.npy", "_z.npy", "_x.npy"))
                sh([args.renflow, "eval", mp, "--data", xp, "--per-sample", lpp, "--threads", "1"])
                classify = "--task" in flags
                if classify:
                    sh([args.renflow, "eval", mp, "--data", xp, "--labels", yp, "--per-sample", lyp, "--threads", "1"])
                sh([args.renflow, "encode", mp, "--data", xp, "--out", zo, "--threads", "1"])
                sh([args.renflow, "decode", mp, "--data", zp, "--out", xo, "--threads", "1"])
                m = tt.load_rf(mp).double()
                xt = torch.from_numpy(x).double()
                with torch.no_grad():
                    lp_t = m.log_prob(xt).numpy()
                    lpy_t = m.log_prob(xt, torch.from_numpy(y[idx]).long()).numpy() if classify else None
                    z_t = m(xt)[0].numpy()
                    x_t = m.inverse(torch.from_numpy(zs).double()).numpy()
                thmax = coupling_theta_max(m, xt)
                lp_r = np.load(lpp).astype(np.float64)
                dlp = np.abs(lp_r - lp_t)
                rel = dlp / (1 + np.abs(lp_t))
                if classify:
                    lpy_r = np.load(lyp).astype(np.float64)
                    rely = (np.abs(lpy_r - lpy_t) / (1 + np.abs(lpy_t))).max()
                else:
                    rely = float("nan")
                dz = np.abs(np.load(zo).astype(np.float64) - z_t).max()
                dx = (np.abs(np.load(xo).astype(np.float64) - x_t) / (1 + np.abs(x_t))).max()
                good = rel.max() < 1e-5 and (not classify or rely < 1e-5) and dz < 1e-3 and dx < 1e-3
                ok = ok and good
                n_params = sum(p.numel() for p in m.parameters())
                print("%-7s %-26s %6d %9d %11.3e %11.3e %11.3e %11.3e %11.3e %9.3f  %s" %
                      (sname, vname, m.D, n_params, dlp.max(), rel.max(), rely, dz, dx, thmax,
                       "ok" if good else "MISMATCH"), flush=True)
    print("renflow and the PyTorch reference compute the same tsflow models" if ok
          else "MISMATCH between renflow and the reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
