#!/usr/bin/python3
"""PyTorch reference implementation of renflow's time-series flow ("tsflow", RF_FLOW_TS), for
apples-to-apples benchmarks. It mirrors include/renflow/tsflow.h and src/flow/ts_*.c,
src/nn/conv1d.c, src/flow/base.c layer for layer:

  * a window is C channels x T samples (a row of D = C*T floats, channel-major x[c*T + t]);
    standardisation u = (x - shift) / scale per dimension (mean / population std of the training
    rows, std 1 where it is 0 or not finite), log-det -sum(log scale);
  * for every scale s = 0 .. S-1 (active block C x T_s, T_0 = T):
      Haar squeeze: per channel, pairs (a, b) = (x[2j], x[2j+1]) -> lo = (a+b)/sqrt2,
        hi = (a-b)/sqrt2; output 2C x T_s/2 with the C low-pass channels first;
      `blocks` x (ActNorm per channel: y = (x + b_c) exp(s_c), log-det T * sum s;
                  1x1 over channels: y[:, t] = W x[:, t], W = P L (U + diag(sign exp(logs))),
                    one C2 x C2 parameter (strict lower L, strict upper U, diagonal logs),
                    log-det T * sum logs, initialised from the LU factors of a random rotation;
                  coupling: the first floor(C2/2) channels pass through and feed a 1-D conv net
                    (kernel K, dilation d, 'same' zero padding, n_hidden hidden layers of
                    `hidden` channels with act and residual h_l = h_{l-1} + act(z_l) for l >= 1,
                    a linear zero-initialised last layer) whose output channel ch*nt + j is
                    parameter j of the transformed channel ch at every time step;
                    affine: s = clamp tanh(raw / clamp), y = x exp(s) + t;
                    spline: renflow's rational-quadratic spline, theta layout [w, h, d]);
      factor-out (not after the last scale): the last C of the 2C channels go to the latent;
  * the flat latent is renflow's: z[0 .. D/2^(S-1)) is the last scale's 2C x T/2^S block,
    then z[D/2^(s+1) .. D/2^s) holds the channels factored out at scale s (s = S-2 .. 0);
  * base: N(0, I), or class-conditional diagonal Gaussians (params [mu (classes x G),
    log sigma (classes x G)]) with G = D (class_tie none) or one group per latent channel of
    each scale, shared over time (class_tie time); without labels log p(x) is the marginal under
    a uniform class prior;
  * training (renflow's rf_train): data-dependent init on up to 1024 seeded training rows (ActNorm
    b = -mean, s = -log(std + 1e-6) per channel over rows and time, layer by layer; class base
    at each class's latent moments, shrunk to the pooled ones with weight n_c / (n_c + 10),
    variances floored at 1e-2), shuffled mini-batches, mean loss (density: NLL; classify:
    -log p(x|y) + ce_weight * CE(p(y|x))), global-norm clipping at 5, Adam (AdamW with weight
    decay 0: beta 0.9/0.999, eps 1e-8), linear warm-up over 5% of the steps then cosine decay
    to 1% of lr, validation each epoch (not timed).

Timing convention (as bench/torch_flows.py and renflow train --json): samples_per_sec counts the
training examples of the optimizer steps per second of the epochs' training loops (shuffle,
batch gather, forward, backward, clipping, update), excluding data loading, initialisation,
validation and model copies.

usage:
  /usr/bin/python3 bench/torch_tsflow.py --train DIR --val DIR [--task density|classify]
      [--epochs E] [--batch B] [--lr LR] [--threads T] [--seed S] [--json]
      [--scales S --blocks N --hidden H --kernel K --dilation D --coupling affine|spline ...]
  /usr/bin/python3 bench/torch_tsflow.py --self-test
DIR is a directory written by `renflow eeg prepare` (windows.npy N x C x T, labels.npy) or a
.npy of windows (N x C x T).  bench/check_tsflow_equivalence.py loads renflow .rf files into
this model (load_rf) and compares log p(x), z and x = f^-1(z) with renflow's.
"""
import argparse
import hashlib
import json
import math
import os
import resource
import struct
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", help="training windows: prepared directory or .npy (N x C x T)")
    ap.add_argument("--val", help="validation windows (same forms)")
    ap.add_argument("--task", choices=("density", "classify"), default="density")
    ap.add_argument("--scales", type=int, default=0, help="default: renflow's rf_tsflow_spec_default")
    ap.add_argument("--blocks", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=0)
    ap.add_argument("--n-hidden", type=int, default=2)
    ap.add_argument("--kernel", type=int, default=0)
    ap.add_argument("--dilation", type=int, default=1)
    ap.add_argument("--act", choices=("relu", "gelu", "tanh"), default="relu")
    ap.add_argument("--coupling", choices=("affine", "spline"), default="affine")
    ap.add_argument("--clamp", type=float, default=3.0)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--bound", type=float, default=5.0)
    ap.add_argument("--class-tie", choices=("time", "none"), default="time")
    ap.add_argument("--ce-weight", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument("--init-batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--progress", action="store_true", help="per-epoch lines on stderr")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="instead of training: time STEPS training steps on the first batch under "
                         "torch.profiler and print the operator table")
    ap.add_argument("--self-test", action="store_true",
                    help="identity at initialisation, invertibility, log-det against autograd, latent layout")
    ap.add_argument("--step-bench", metavar="C,T", help="instead of training: time the training step on a fixed "
                    "random batch of C x T windows, best of --windows windows of --steps steps (as renflow's "
                    "step benchmark in bench/bench_tsflow.sh --steps)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--windows", type=int, default=5)
    a = ap.parse_args(argv)
    if not a.self_test and not a.train and not a.step_bench:
        ap.error("--train is required (or --self-test, --step-bench)")
    return a


if __name__ == "__main__":
    ARGS = parse_args()
    # Thread counts must be in the environment before torch (OpenMP) and OpenBLAS start.
    os.environ["OMP_NUM_THREADS"] = str(max(1, ARGS.threads))
    os.environ["OPENBLAS_NUM_THREADS"] = str(max(1, ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_flows import LULinear, clip_grad_norm, lr_schedule, rqs_fwd, rqs_inv  # noqa: E402

RSS_AFTER_IMPORT_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
LOG_2PI = math.log(2 * math.pi)
SQ_R = float(np.float32(0.70710678118654752))  # renflow's SQ_R (a float constant)
ACTS = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu}  # renflow's gelu is the erf form


def spec_default(C, T):
    """rf_tsflow_spec_default (src/flow/ts_flow.c)."""
    if C < 1 or T < 2 or C * T > 100000 or T % 2:
        raise ValueError("tsflow: window of %d channels x %d samples out of range" % (C, T))
    S = 0
    while S < 4 and T % (2 << S) == 0 and T // (2 << S) >= 2:
        S += 1
    return {"channels": C, "length": T, "scales": max(S, 1), "blocks": 3 if C * T > 4096 else 4,
            "hidden": min(max(2 * C, 32), 128), "n_hidden": 2, "kernel": 5 if T >= 256 else 3, "dilation": 1,
            "act": "relu", "residual": True, "transform": "affine", "clamp": 3.0, "bins": 8, "bound": 5.0,
            "base": "normal", "n_classes": 0, "class_tie": "time"}


# ---------------------------------------------------------------- layers on (n, C, T) blocks
# forward(x) -> (y, logdet per row); inverse(y) -> (x, logdet of the inverse per row)

def squeeze(x):
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.cat([(a + b) * SQ_R, (a - b) * SQ_R], 1)


def unsqueeze(y):
    C = y.shape[1] // 2
    lo, hi = y[:, :C], y[:, C:]
    return torch.stack([(lo + hi) * SQ_R, (lo - hi) * SQ_R], -1).flatten(-2)


class ActNorm(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(C))
        self.s = nn.Parameter(torch.zeros(C))

    def data_init(self, x):
        with torch.no_grad():
            xd = x.double().transpose(0, 1).reshape(x.shape[1], -1)
            self.b.copy_(-xd.mean(1))
            self.s.copy_(-torch.log(xd.std(1, unbiased=True) + 1e-6))

    def forward(self, x):
        return (x + self.b[:, None]) * torch.exp(self.s)[:, None], (x.shape[2] * self.s.sum()).expand(x.shape[0])

    def inverse(self, y):
        return y * torch.exp(-self.s)[:, None] - self.b[:, None], (-y.shape[2] * self.s.sum()).expand(y.shape[0])


class Conv1x1(LULinear):
    """Glow's invertible 1x1 over channels: torch_flows.LULinear's LU parametrisation, applied at
    every time step (log-det times T)."""

    def forward(self, x):
        return (F.conv1d(x, self.weight()[:, :, None]),
                (x.shape[2] * torch.diagonal(self.w).sum()).expand(x.shape[0]))

    def inverse(self, y):
        L, U = self._factors()
        n, C, T = y.shape
        r = (self.P.t() @ y.transpose(0, 1).reshape(C, n * T))  # X = U^-1 L^-1 P^T Y
        r = torch.linalg.solve_triangular(L, r, upper=False, unitriangular=True)
        r = torch.linalg.solve_triangular(U, r, upper=True)
        return r.reshape(C, n, T).transpose(0, 1), (-T * torch.diagonal(self.w).sum()).expand(n)


class ConvNet(nn.Module):
    """rf_conv1d: n_hidden conv layers (act, residual from the second on) and a zero last layer."""

    def __init__(self, c_in, c_out, hidden, n_hidden, kernel, dilation, act, residual, gen):
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        dims = [c_in] + [hidden] * n_hidden
        self.hidden = nn.ModuleList(nn.Conv1d(dims[i], dims[i + 1], kernel, padding=pad, dilation=dilation)
                                    for i in range(n_hidden))
        self.out = nn.Conv1d(hidden, c_out, kernel, padding=pad, dilation=dilation)
        self.act = ACTS[act]
        self.residual = residual
        with torch.no_grad():
            for conv in self.hidden:
                a = math.sqrt(3.0 / (kernel * conv.in_channels))
                conv.weight.copy_((2 * torch.rand(conv.weight.shape, generator=gen) - 1) * a)
                conv.bias.zero_()
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, x):
        h = x
        for l, conv in enumerate(self.hidden):
            a = self.act(conv(h))
            h = h + a if self.residual and l > 0 else a
        return self.out(h)


class Coupling(nn.Module):
    def __init__(self, C, spec, gen):
        super().__init__()
        self.ca, self.cb = C // 2, C - C // 2
        self.kind = spec["transform"]
        self.clamp, self.bins, self.bound = float(spec["clamp"]), spec["bins"], float(spec["bound"])
        self.nt = 2 if self.kind == "affine" else 3 * self.bins - 1
        self.net = ConvNet(self.ca, self.cb * self.nt, spec["hidden"], spec["n_hidden"], spec["kernel"],
                           spec["dilation"], spec["act"], spec["residual"], gen)

    def _theta(self, xa):
        th = self.net(xa)
        return th.view(th.shape[0], self.cb, self.nt, th.shape[2])

    def _affine_s(self, raw):
        return self.clamp * torch.tanh(raw / self.clamp) if self.clamp > 0 else raw

    def forward(self, x):
        xa, xb = x[:, :self.ca], x[:, self.ca:]
        th = self._theta(xa)
        if self.kind == "affine":
            s = self._affine_s(th[:, :, 0])
            yb, ld = xb * torch.exp(s) + th[:, :, 1], s
        else:
            yb, ld = rqs_fwd(xb, th.permute(0, 1, 3, 2), self.bins, self.bound)
        return torch.cat([xa, yb], 1), ld.sum((1, 2))

    def inverse(self, y):
        ya, yb = y[:, :self.ca], y[:, self.ca:]
        th = self._theta(ya)
        if self.kind == "affine":
            s = self._affine_s(th[:, :, 0])
            xb, ld = (yb - th[:, :, 1]) * torch.exp(-s), -s
        else:
            xb, ld = rqs_inv(yb, th.permute(0, 1, 3, 2), self.bins, self.bound)
        return torch.cat([ya, xb], 1), ld.sum((1, 2))


class TSFlow(nn.Module):
    def __init__(self, spec, seed=1):
        super().__init__()
        self.spec = dict(spec)
        C, T, S = spec["channels"], spec["length"], spec["scales"]
        if T % (1 << S):
            raise ValueError("tsflow: length %d is not divisible by 2^scales" % T)
        self.C, self.T, self.S, self.D = C, T, S, C * T
        gen = torch.Generator().manual_seed(seed)
        self.scales = nn.ModuleList()
        for _ in range(S):
            layers = []
            for _ in range(spec["blocks"]):
                layers += [ActNorm(2 * C), Conv1x1(2 * C, gen), Coupling(2 * C, spec, gen)]
            self.scales.append(nn.ModuleList(layers))
        self.register_buffer("shift", torch.zeros(self.D))
        self.register_buffer("scale", torch.ones(self.D))
        self.n_classes = spec["n_classes"] if spec["base"] == "class" else 0
        if spec["base"] not in ("normal", "class"):
            raise ValueError("base %s is not covered by the reference (normal, class)" % spec["base"])
        if self.n_classes:
            group = self.latent_groups() if spec.get("class_tie", "time") == "time" else torch.arange(self.D)
            self.register_buffer("group", group)
            G = int(group.max()) + 1
            self.mu = nn.Parameter(torch.randn(self.n_classes, G, generator=gen))
            self.ls = nn.Parameter(torch.zeros(self.n_classes, G))

    def latent_groups(self):
        """ts_time_groups (src/flow/flow.c): latent channel of every dimension of the flat z."""
        g, group = 0, torch.empty(self.D, dtype=torch.long)
        for k in range(self.S - 1, -1, -1):
            lo = 0 if k == self.S - 1 else self.D >> (k + 1)
            hi, ln = self.D >> k, self.T >> (k + 1)
            group[lo:hi] = g + torch.arange(hi - lo) // ln
            g += (hi - lo) // ln
        return group

    # ---- standardisation and data-dependent initialisation (rf_train's prepare_model)
    def fit_standardizer(self, x):
        xd = x.double()
        sd = xd.std(0, unbiased=False)
        ok = torch.isfinite(sd) & (sd.float() >= torch.finfo(torch.float32).tiny)
        self.shift.copy_(xd.mean(0).float())
        self.scale.copy_(torch.where(ok, sd, torch.ones_like(sd)).float())

    @torch.no_grad()
    def data_init(self, x, labels=None):
        h = ((x - self.shift) / self.scale).view(-1, self.C, self.T)
        outs = []
        for s, layers in enumerate(self.scales):
            h = squeeze(h)
            for l in layers:
                if isinstance(l, ActNorm):
                    l.data_init(h)
                h, _ = l(h)
            if s < self.S - 1:
                outs.append(h[:, self.C:])
                h = h[:, :self.C]
        if self.n_classes and labels is not None:
            z = self._flat(h, outs).double()
            G = self.mu.shape[1]
            onehot = F.one_hot(self.group, G).double()  # D x G
            pooled_n = z.shape[0] * onehot.sum(0)
            pm = (z.sum(0) @ onehot) / pooled_n
            pv = ((z * z).sum(0) @ onehot) / pooled_n - pm * pm
            plv = torch.log(pv.clamp(min=1e-2))
            for c in range(self.n_classes):
                zc = z[labels == c]
                m, lv = pm, plv
                if zc.shape[0] > 0:
                    nc = zc.shape[0] * onehot.sum(0)
                    w = nc / (nc + 10.0)
                    cm = (zc.sum(0) @ onehot) / nc
                    cv = ((zc * zc).sum(0) @ onehot) / nc - cm * cm
                    m = w * cm + (1 - w) * pm
                    lv = w * torch.log(cv.clamp(min=1e-2)) + (1 - w) * plv
                self.mu[c] = m.float()
                self.ls[c] = (0.5 * lv).float()

    # ---- density
    @staticmethod
    def _flat(h, outs):
        return torch.cat([h.flatten(1)] + [o.flatten(1) for o in reversed(outs)], 1)

    def forward(self, x):
        """x (n x D, data units) -> (z (n x D, renflow's flat layout), log|det dz/dx|)."""
        n = x.shape[0]
        h = ((x - self.shift) / self.scale).view(n, self.C, self.T)
        ld = (-torch.log(self.scale).sum()).expand(n)
        outs = []
        for s, layers in enumerate(self.scales):
            h = squeeze(h)
            for l in layers:
                h, d = l(h)
                ld = ld + d
            if s < self.S - 1:
                outs.append(h[:, self.C:])
                h = h[:, :self.C]
        return self._flat(h, outs), ld

    def inverse(self, z):
        n, C = z.shape[0], self.C
        # unflatten: the last scale's block first, then the factored-out channels of scales S-2 .. 0
        off = self.D >> (self.S - 1)
        h = z[:, :off].reshape(n, 2 * C, self.T >> self.S)
        outs = {}
        for s in range(self.S - 2, -1, -1):
            size = (self.D >> s) - (self.D >> (s + 1))
            outs[s] = z[:, off:off + size].reshape(n, C, self.T >> (s + 1))
            off += size
        for s in range(self.S - 1, -1, -1):
            if s < self.S - 1:
                h = torch.cat([h, outs[s]], 1)
            for l in reversed(self.scales[s]):
                h, _ = l.inverse(h)
            h = unsqueeze(h)
        return h.reshape(n, self.D) * self.scale + self.shift

    def class_logp(self, z):
        """a[i, c] = log N(z_i; mu_c, sigma_c) (tied parameters expanded by group)."""
        mu, ls = self.mu[:, self.group], self.ls[:, self.group]  # classes x D
        u = (z[:, None, :] - mu) * torch.exp(-ls)
        return (-0.5 * u * u - ls).sum(-1) - 0.5 * self.D * LOG_2PI

    def log_prob(self, x, labels=None):
        """log p(x) (marginal over a uniform prior for a class base without labels) or log p(x|y)."""
        z, ld = self(x)
        if not self.n_classes:
            return -0.5 * (z * z).sum(1) - 0.5 * self.D * LOG_2PI + ld
        a = self.class_logp(z)
        if labels is not None:
            return a.gather(1, labels[:, None])[:, 0] + ld
        return torch.logsumexp(a, 1) - math.log(self.n_classes) + ld

    def loss(self, x, labels=None, ce_weight=1.0):
        """renflow's training loss (rf_flow_loss_grad): mean NLL; classify adds ce_weight * CE."""
        z, ld = self(x)
        if not self.n_classes:
            return -(-0.5 * (z * z).sum(1) - 0.5 * self.D * LOG_2PI + ld).mean()
        a = self.class_logp(z)
        ay = a.gather(1, labels[:, None])[:, 0]
        l = -(ay + ld)
        if ce_weight > 0:
            l = l + ce_weight * (torch.logsumexp(a, 1) - ay)
        return l.mean()


# ---------------------------------------------------------------- renflow model files

def read_rf(path):
    """(header JSON, parameters, shift, scale) of a renflow .rf file (src/flow/model_io.c)."""
    with open(path, "rb") as fp:
        buf = fp.read()
    if buf[:8] != b"RENFLOW\0":
        raise ValueError("%s: not a renflow model file" % path)
    if hashlib.sha256(buf[:-32]).digest() != buf[-32:]:
        raise ValueError("%s: checksum mismatch" % path)
    _version, jl = struct.unpack_from("<II", buf, 8)
    head = json.loads(buf[16:16 + jl].decode())
    off = 16 + jl
    (n_params,) = struct.unpack_from("<Q", buf, off)
    off += 8
    D = head["spec"]["dim"]
    params = np.frombuffer(buf, dtype="<f4", count=n_params, offset=off)
    off += 4 * n_params
    shift = np.frombuffer(buf, dtype="<f4", count=D, offset=off)
    scale = np.frombuffer(buf, dtype="<f4", count=D, offset=off + 4 * D)
    return head, params, shift, scale


def load_rf(path):
    """Reads a renflow tsflow .rf model into an equivalent TSFlow (same parameters, 1x1
    permutations and signs, base, standardisation), checking every layer's kind and shape."""
    head, params, shift, scale = read_rf(path)
    spec = head["spec"]
    if spec["flow"] != "tsflow":
        raise ValueError("%s: flow %s is not a tsflow (use bench/torch_flows.load_rf)" % (path, spec["flow"]))
    inp = (head.get("meta") or {}).get("input")
    if inp and (inp.get("bandpower") or inp.get("context")):
        raise ValueError("%s: input transforms %s are not covered by the reference" % (path, inp))
    s = dict(spec)
    s.setdefault("class_tie", "time")
    m = TSFlow(s)
    C, T, D = spec["channels"], spec["length"], spec["dim"]
    expect = []  # (kind, channels, length, module) in file order
    Ts = T
    for sc in range(spec["scales"]):
        expect.append(("ts_squeeze", C, Ts, None))
        for l in m.scales[sc]:
            kind = {ActNorm: "ts_actnorm", Conv1x1: "ts_conv1x1", Coupling: "ts_coupling"}[type(l)]
            expect.append((kind, 2 * C, Ts // 2, l))
        Ts //= 2
    layers = head["layers"]
    if len(layers) != len(expect):
        raise ValueError("%s: %d layers, the reference builds %d" % (path, len(layers), len(expect)))
    pos = [0]

    def take(t):
        n = t.numel()
        if pos[0] + n > params.size:
            raise ValueError("%s: parameters end early" % path)
        t.data.copy_(torch.from_numpy(params[pos[0]:pos[0] + n].copy()).view_as(t))
        pos[0] += n

    with torch.no_grad():
        for k, (j, (kind, ch, ln, l)) in enumerate(zip(layers, expect)):
            if (j["kind"], j["channels"], j["length"], j["dim"]) != (kind, ch, ln, D):
                raise ValueError("%s: layer %d is %s %dx%d, the reference has %s %dx%d" %
                                 (path, k, j["kind"], j["channels"], j["length"], kind, ch, ln))
            if isinstance(l, ActNorm):
                take(l.b)
                take(l.s)
            elif isinstance(l, Conv1x1):
                P = torch.zeros(ch, ch)
                P[torch.arange(ch), torch.tensor(j["perm"])] = 1.0  # W[i] = (L U)[perm[i]]
                l.P.copy_(P)
                l.sign.copy_(torch.tensor(j["sign"], dtype=torch.float32))
                take(l.w)
            elif isinstance(l, Coupling):
                cj = j["conditioner"]
                want = {"hidden": spec["hidden"], "n_hidden": spec["n_hidden"], "kernel": spec["kernel"],
                        "dilation": spec["dilation"], "act": spec["act"], "residual": spec["residual"]}
                if {k2: cj[k2] for k2 in want} != want:
                    raise ValueError("%s: layer %d conditioner %s differs from the spec %s" % (path, k, cj, want))
                tr = {"affine": "affine", "rqs": "spline"}[j["transform"]]
                if tr != l.kind:
                    raise ValueError("%s: layer %d transform %s, spec %s" % (path, k, tr, l.kind))
                for conv in list(l.net.hidden) + [l.net.out]:
                    # renflow: W (out x kernel*in, column k*in + c); torch: weight[out, in, k]
                    o, i, K = conv.weight.shape
                    w = torch.empty(o, K, i)
                    take(w)
                    conv.weight.copy_(w.permute(0, 2, 1))
                    take(conv.bias)
        if m.n_classes:
            take(m.mu)
            take(m.ls)
        if pos[0] != params.size:
            raise ValueError("%s: %d parameters, the reference used %d" % (path, params.size, pos[0]))
        m.shift.copy_(torch.from_numpy(shift.copy()))
        m.scale.copy_(torch.from_numpy(scale.copy()))
    return m


# ---------------------------------------------------------------- data and training

def load_windows(path):
    """(x (N x C*T float32), labels or None, C, T) from a prepared directory or a .npy."""
    labels = None
    if os.path.isdir(path):
        w = np.load(os.path.join(path, "windows.npy"))
        lp = os.path.join(path, "labels.npy")
        if os.path.exists(lp):
            labels = torch.from_numpy(np.load(lp).astype(np.int64))
    else:
        w = np.load(path)
    if w.ndim != 3:
        raise ValueError("%s: expected windows x channels x samples, got shape %s" % (path, w.shape))
    N, C, T = w.shape
    return torch.from_numpy(np.ascontiguousarray(w.reshape(N, C * T), dtype=np.float32)), labels, C, T


@torch.no_grad()
def eval_nll(model, x, y, chunk=512):
    tot = 0.0
    for s in range(0, x.shape[0], chunk):
        lab = y[s:s + chunk] if y is not None and model.n_classes else None
        tot -= model.log_prob(x[s:s + chunk], lab).double().sum().item()
    return tot / x.shape[0]


def make_spec(args, C, T, n_classes):
    spec = spec_default(C, T)
    for k in ("scales", "blocks", "hidden", "kernel"):
        if getattr(args, k):
            spec[k] = getattr(args, k)
    spec.update(n_hidden=args.n_hidden, dilation=args.dilation, act=args.act, transform=args.coupling,
                clamp=args.clamp, bins=args.bins, bound=args.bound, class_tie=args.class_tie)
    if args.task == "classify":
        spec.update(base="class", n_classes=n_classes)
    return spec


def train(args):
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    xtr, ytr, C, T = load_windows(args.train)
    xva, yva = (load_windows(args.val)[:2]) if args.val else (xtr[:0], None)
    if args.task == "classify":
        if ytr is None or (args.val and yva is None):
            raise ValueError("--task classify needs labels.npy in the data directories")
        n_classes = int(max(ytr.max(), yva.max() if yva is not None and yva.numel() else 0)) + 1
    else:
        ytr = yva = None
        n_classes = 0
    spec = make_spec(args, C, T, n_classes)
    n = xtr.shape[0]
    model = TSFlow(spec, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    model.fit_standardizer(xtr)
    m = min(n, args.init_batch)
    if m >= 2:
        idx = torch.randperm(n, generator=gen)[:m]
        model.data_init(xtr[idx], ytr[idx] if ytr is not None else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    B = min(args.batch, n)
    if args.profile:
        return profile_steps(model, params, opt, xtr[:B], ytr[:B] if ytr is not None else None, args)
    per_epoch = (n + B - 1) // B
    total = per_epoch * args.epochs
    warmup = int(args.warmup * total)
    step = samples = skipped = 0
    train_seconds = 0.0
    step_times = []
    best_val = math.inf
    train_curve, val_curve = [], []
    t_wall = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum = loss_n = 0.0
        for b in range(per_epoch):
            ts = time.perf_counter()
            sel = perm[b * B:(b + 1) * B]
            xb = xtr[sel]
            yb = ytr[sel] if ytr is not None else None
            for p in params:
                p.grad = None
            loss = model.loss(xb, yb, args.ce_weight)
            loss.backward()
            gnorm = clip_grad_norm(params, args.clip)
            lv = loss.item()
            if not (math.isfinite(lv) and math.isfinite(gnorm)):
                skipped += 1
                step += 1
                continue
            for g in opt.param_groups:
                g["lr"] = lr_schedule(args.lr, step, total, warmup)
            opt.step()
            step += 1
            samples += xb.shape[0]
            loss_sum += lv * xb.shape[0]
            loss_n += xb.shape[0]
            step_times.append(time.perf_counter() - ts)
        train_seconds += time.perf_counter() - t0
        tr = loss_sum / loss_n if loss_n else math.nan
        vl = eval_nll(model, xva, yva) if xva.shape[0] else tr
        train_curve.append(tr)
        val_curve.append(vl)
        best_val = min(best_val, vl) if math.isfinite(vl) else best_val
        if args.progress:
            print("epoch %3d/%d  train %.4f  val %.4f  %8.1f samples/s" %
                  (epoch + 1, args.epochs, tr, vl, samples / train_seconds), file=sys.stderr)
    return {
        "impl": "torch",
        "torch_version": torch.__version__,
        "spec": spec,
        "dim": C * T,
        "n_params": sum(p.numel() for p in params),
        "threads": args.threads,
        "batch": B,
        "train_rows": n,
        "epochs_run": args.epochs,
        "steps": step,
        "skipped_steps": skipped,
        "best_val_nll": best_val,
        "final_train_nll": train_curve[-1] if train_curve else math.nan,
        "train_curve": train_curve,
        "val_curve": val_curve,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - t_wall,
        "samples_per_sec": samples / train_seconds if train_seconds > 0 else 0.0,
        "median_step_ms": 1e3 * float(np.median(step_times)) if step_times else math.nan,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_after_import_mb": RSS_AFTER_IMPORT_MB,
    }


def step_bench(args):
    """Best-of-windows time of one training step on random data (no standardisation, parameters
    perturbed by 0.01 so that no layer is the identity), for comparisons on a shared machine."""
    torch.set_num_threads(max(1, args.threads))
    C, T = (int(v) for v in args.step_bench.split(","))
    spec = spec_default(C, T)
    if args.task == "classify":
        spec.update(base="class", n_classes=2)
    gen = torch.Generator().manual_seed(args.seed)
    model = TSFlow(spec, seed=args.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    xb = torch.randn(args.batch, C * T, generator=gen)
    yb = torch.arange(args.batch) % 2 if args.task == "classify" else None
    best = math.inf
    for w in range(args.windows + 1):  # window 0 warms up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            for p in params:
                p.grad = None
            loss = model.loss(xb, yb, args.ce_weight)
            loss.backward()
            clip_grad_norm(params, args.clip)
            opt.step()
        dt = (time.perf_counter() - t0) / args.steps
        if w > 0:
            best = min(best, dt)
    return {"impl": "torch", "channels": C, "length": T, "classify": int(args.task == "classify"),
            "threads": args.threads, "batch": args.batch, "n_params": sum(p.numel() for p in params),
            "best_ms_per_step": 1e3 * best, "samples_per_sec": args.batch / best, "loss": loss.item()}


def profile_steps(model, params, opt, xb, yb, args):
    from torch.profiler import ProfilerActivity, profile

    def step():
        for p in params:
            p.grad = None
        loss = model.loss(xb, yb, args.ce_weight)
        loss.backward()
        clip_grad_norm(params, args.clip)
        opt.step()

    for _ in range(2):  # warm-up
        step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile):
            step()
    sec = (time.perf_counter() - t0) / args.profile
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20), file=sys.stderr)
    return {"impl": "torch", "profile_steps": args.profile, "ms_per_step_profiled": 1e3 * sec,
            "samples_per_sec_profiled": xb.shape[0] / sec}


# ---------------------------------------------------------------- self-test

def self_test():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + msg)
        ok = ok and bool(cond)

    # The squeeze uses renflow's float32 1/sqrt(2), so in float64 it is orthonormal only to
    # ~3e-8 per pair (as renflow's in float32): tolerances below allow for that, nothing more.
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    check((unsqueeze(squeeze(x)) - x).abs().max() < 1e-6, "Haar squeeze round trip")
    check(torch.allclose((squeeze(x) ** 2).sum((1, 2)), (x ** 2).sum((1, 2))), "Haar squeeze is orthonormal")
    for transform in ("affine", "spline"):
        for base in ("normal", "class"):
            spec = spec_default(3, 16)
            spec.update(scales=3, blocks=2, hidden=8, kernel=3, dilation=2, transform=transform, base=base,
                        n_classes=3 if base == "class" else 0)
            m = TSFlow(spec, seed=3).double()
            xs = torch.randn(64, 48, dtype=torch.float64) * 2 + 1
            m.fit_standardizer(xs)
            with torch.no_grad():
                u = (xs - m.shift) / m.scale
                h = u.view(-1, 3, 16)
                ident = True
                for s, layers in enumerate(m.scales):
                    h = squeeze(h)
                    for l in layers:
                        y, d = l(h)
                        if isinstance(l, Coupling):
                            ident = ident and bool((y - h).abs().max() < 1e-12 and d.abs().max() < 1e-12)
                        h = y
                    h = h[:, :3] if s < m.S - 1 else h
            check(ident, "%s/%s: fresh couplings are the identity" % (transform, base))
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.03 * torch.randn_like(p))  # at 0.1 the spline flows get so ill-conditioned that
                    # float64 round-off grows to ~1e-3 through the inverse (each layer alone: 1e-13)
                y = torch.randint(0, 3, (64,)) if base == "class" else None
                m.data_init(xs, y)
                z, ld = m(xs)
                xr = m.inverse(z)
            check((xr - xs).abs().max() < 1e-4, "%s/%s: inverse(forward(x)) = x (max err %.1e)"
                  % (transform, base, (xr - xs).abs().max()))
            J = torch.stack([torch.autograd.functional.jacobian(lambda v: m(v[None])[0][0], r) for r in xs[:2]])
            dl = (torch.linalg.slogdet(J)[1] - ld[:2]).abs().max()
            check(dl < 1e-5, "%s/%s: log-det equals log|det J| by autograd (max diff %.1e)" % (transform, base, dl))
            if base == "class":
                with torch.no_grad():
                    lp = m.log_prob(xs)
                    lpy = torch.stack([m.log_prob(xs, torch.full((64,), c)) for c in range(3)], 1)
                check((lp - (torch.logsumexp(lpy, 1) - math.log(3))).abs().max() < 1e-9,
                      "class: marginal = logsumexp of class-conditionals - log C")
                G = m.latent_groups()
                check(int(G.max()) + 1 == 2 * 3 + 3 + 3 and bool((G[:2] == 0).all()) and int(G[2]) == 1,
                      "class: one group per latent channel (last scale first)")
    print("self-test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    if ARGS.self_test:
        sys.exit(self_test())
    res = step_bench(ARGS) if ARGS.step_bench else train(ARGS)
    if ARGS.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if not k.endswith("_curve"):
                print("%-22s %s" % (k, v))


if __name__ == "__main__":
    main()
