#!/usr/bin/python3
"""PyTorch reference implementation of renflow's flows, for apples-to-apples benchmarks.

Every model mirrors rf_flow_create (src/flow/flow.c) layer for layer:

  realnvp  per block: ActNorm, affine coupling (pass-through parity = block % 2)
  glow     per block: ActNorm, LU linear, affine coupling (parity 0)
  maf      per block: ActNorm, MADE affine autoregressive, reversal
  nsf      per block: ActNorm, LU linear, rational-quadratic spline coupling (parity 0)
  nsf-ar   per block: ActNorm, LU linear, MADE rational-quadratic spline autoregressive

with the same details:
  * data standardisation u = (x - mean) / std (population std of the training set) in front of
    the first layer; its log-determinant -sum(log std) is part of log p(x);
  * ActNorm y = (x + b) exp(s), data-initialised (b = -mean, s = -log(sample std + 1e-6)) layer
    by layer on up to 1024 seeded training rows pushed through the preceding layers;
  * LU linear y = x W^T, W = P L (U + diag(sign exp(logs))), all free entries in one D x D
    parameter (strict lower = L, strict upper = U, diagonal = logs), initialised from the LU
    decomposition of a random rotation;
  * coupling: coordinates i with i % 2 == parity pass through and feed an MLP
    (n_in -> hidden -> hidden -> n_out, ReLU, Kaiming-uniform U(-sqrt(3/fan_in), +) hidden
    weights, zero biases, zero-initialised last layer); its outputs, coordinate-major, are the
    transform parameters of the other coordinates;
  * affine transform: theta = (raw, t), s = c tanh(raw / c) with c = 3, y = x exp(s) + t;
  * RQ spline (Durkan et al. 2019): K = 8 bins on [-5, 5] with identity tails; widths and
    heights 2B (1e-3 + (1 - 1e-3 K) softmax(.)), interior derivatives
    1e-3 + softplus(raw + c0) with c0 = log(expm1(1 - 1e-3)) (raw = 0 gives 1), boundary
    derivatives 1; theta layout [w_0..w_K-1, h_0..h_K-1, d_1..d_K-1];
  * MADE: input d has degree d + 1, hidden unit k has degree 1 + k mod (D - 1), output block i
    (P parameters of coordinate i) sees hidden units of degree < i + 1; masked weights are 0;
  * standard-normal base;
  * training: shuffled mini-batches (last one partial), mean NLL, global-norm clipping at 5,
    AdamW (beta 0.9/0.999, eps 1e-8, weight decay 0), linear warm-up over 5% of the steps then
    cosine decay to 1% of lr, validation each epoch with the best-validation parameters kept,
    early stopping after 10 epochs without improvement.

usage:
  /usr/bin/python3 bench/torch_flows.py --flow F --train X.npy [--val V.npy] --test Y.npy
      --blocks N --hidden H --epochs E --batch B --lr LR --threads T --seed S --json
  /usr/bin/python3 bench/torch_flows.py --self-test
"""
import argparse
import json
import math
import os
import resource
import sys
import time

FLOWS = ("realnvp", "glow", "maf", "nsf", "nsf-ar")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow", choices=FLOWS)
    ap.add_argument("--train", help="training data (.npy, n x D)")
    ap.add_argument("--val", help="validation data (.npy); default: a seeded 10%% of the training rows "
                    "(as renflow train without --val)")
    ap.add_argument("--test", help="test data (.npy)")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--n-hidden", type=int, default=2, help="hidden layers per conditioner")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--bound", type=float, default=5.0)
    ap.add_argument("--clamp", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.05, help="warm-up fraction of the steps")
    ap.add_argument("--patience", type=int, default=10, help="early stopping (0 = off)")
    ap.add_argument("--init-batch", type=int, default=1024, help="rows for the ActNorm data init")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="OpenBLAS threads (default: --threads, as renflow's rf_set_threads)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-samples", type=int, default=10000, help="samples drawn to time sampling")
    ap.add_argument("--sample-batch", type=int, default=1024,
                    help="rows per inverse pass when sampling (renflow's sample workspace holds 1024)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--progress", action="store_true", help="per-epoch lines on stderr")
    ap.add_argument("--self-test", action="store_true",
                    help="check identity at initialisation, invertibility, log-dets and MADE masks")
    a = ap.parse_args(argv)
    if not a.self_test and not (a.flow and a.train and a.test):
        ap.error("--flow, --train and --test are required (or --self-test)")
    return a


if __name__ == "__main__":
    ARGS = parse_args()
    # Thread counts must be in the environment before torch (OpenMP) and OpenBLAS start.
    os.environ["OMP_NUM_THREADS"] = str(max(1, ARGS.threads))
    os.environ["OPENBLAS_NUM_THREADS"] = str(max(1, ARGS.blas_threads or ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

RSS_AFTER_IMPORT_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
LOG_2PI = math.log(2 * math.pi)
MIN_BIN = float(np.float32(1e-3))    # RF_RQS_MIN_BIN (float constant, widened)
MIN_DERIV = float(np.float32(1e-3))  # RF_RQS_MIN_DERIV
C0 = math.log(math.expm1(1.0 - MIN_DERIV))


# ---------------------------------------------------------------- conditioners

def init_dense_(weight, bias, gen, mask=None):
    """Kaiming-uniform with gain 1 over the free inputs of each row; zero bias and masked weights."""
    with torch.no_grad():
        out, inp = weight.shape
        fan = mask.sum(1) if mask is not None else torch.full((out,), float(inp))
        a = torch.sqrt(3.0 / fan.clamp(min=1.0))
        u = torch.rand(out, inp, generator=gen)
        weight.copy_((2 * u - 1) * a[:, None])
        if mask is not None:
            weight.mul_(mask)
        bias.zero_()


class MLP(nn.Module):
    """n_in -> hidden (x n_hidden, ReLU) -> n_out, last layer zero."""

    def __init__(self, n_in, n_out, hidden, n_hidden, gen):
        super().__init__()
        dims = [n_in] + [hidden] * n_hidden
        self.hidden = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(n_hidden))
        self.out = nn.Linear(hidden, n_out)
        for lin in self.hidden:
            init_dense_(lin.weight, lin.bias, gen)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        for lin in self.hidden:
            x = F.relu(lin(x))
        return self.out(x)


class MaskedLinear(nn.Linear):
    def __init__(self, n_in, n_out, mask):
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(D, P, hidden, n_hidden):
    """Masks (out x in) of renflow's MADE (src/nn/made.c)."""
    m = torch.tensor([1 + k % (D - 1 if D > 1 else 1) for k in range(hidden)])
    deg_in = torch.arange(1, D + 1)
    masks = [(m[:, None] >= deg_in[None, :]).float()]
    for _ in range(1, n_hidden):
        masks.append((m[:, None] >= m[None, :]).float())
    out_deg = torch.arange(D * P) // P + 1
    masks.append((out_deg[:, None] > m[None, :]).float())
    return masks


class MADE(nn.Module):
    """D -> hidden (x n_hidden) -> D * P; output i * P + j depends on x[:i] only."""

    def __init__(self, D, P, hidden, n_hidden, gen):
        super().__init__()
        masks = made_masks(D, P, hidden, n_hidden)
        dims = [D] + [hidden] * n_hidden
        self.hidden = nn.ModuleList(MaskedLinear(dims[i], dims[i + 1], masks[i]) for i in range(n_hidden))
        self.out = MaskedLinear(hidden, D * P, masks[-1])
        for lin in self.hidden:
            init_dense_(lin.weight, lin.bias, gen, lin.mask)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        for lin in self.hidden:
            x = F.relu(lin(x))
        return self.out(x)


# ---------------------------------------------------------------- elementwise transforms

def affine_fwd(x, th, clamp):
    s = clamp * torch.tanh(th[..., 0] / clamp) if clamp > 0 else th[..., 0]
    return x * torch.exp(s) + th[..., 1], s


def affine_inv(y, th, clamp):
    s = clamp * torch.tanh(th[..., 0] / clamp) if clamp > 0 else th[..., 0]
    return (y - th[..., 1]) * torch.exp(-s), -s


def _knots(raw, K, B):
    """Knot positions (..., K+1) from unnormalised bin sizes, first -B, last exactly B."""
    p = torch.softmax(raw, dim=-1)
    cum = torch.cumsum(MIN_BIN + (1 - MIN_BIN * K) * p, dim=-1)
    knots = F.pad(2 * B * cum - B, (1, 0), value=-B)
    return torch.cat([knots[..., :-1], torch.full_like(knots[..., -1:], B)], dim=-1)


def _spline_setup(th, K, B):
    X = _knots(th[..., :K], K, B)
    Y = _knots(th[..., K:2 * K], K, B)
    d_int = MIN_DERIV + F.softplus(th[..., 2 * K:] + C0)
    d = F.pad(d_int, (1, 1), value=1.0)
    return X, Y, d


def _bin_params(X, Y, d, t, by_y, K):
    knots = Y if by_y else X
    # bin k: knots[k] <= t < knots[k+1], clamped to [0, K-1] (as rqs_knots)
    k = (t[..., None] >= knots[..., 1:K]).sum(-1, keepdim=True)
    xk = X.gather(-1, k)
    w = X.gather(-1, k + 1) - xk
    yk = Y.gather(-1, k)
    h = Y.gather(-1, k + 1) - yk
    d0 = d.gather(-1, k)
    d1 = d.gather(-1, k + 1)
    return [v.squeeze(-1) for v in (xk, w, yk, h, d0, d1)]


def rqs_fwd(x, th, K, B):
    inside = (x >= -B) & (x <= B)
    xc = x.clamp(-B, B)
    X, Y, d = _spline_setup(th, K, B)
    xk, w, yk, h, d0, d1 = _bin_params(X, Y, d, xc, False, K)
    s = h / w
    xi = (xc - xk) / w
    omx = 1 - xi
    t = xi * omx
    den = s + (d0 + d1 - 2 * s) * t
    y = yk + h * (s * xi * xi + d0 * t) / den
    num = d1 * xi * xi + 2 * s * t + d0 * omx * omx
    ld = torch.log(s * s * num) - 2 * torch.log(den)
    return torch.where(inside, y.clamp(-B, B), x), torch.where(inside, ld, torch.zeros_like(ld))


def rqs_inv(y, th, K, B):
    inside = (y >= -B) & (y <= B)
    yc = y.clamp(-B, B)
    X, Y, d = _spline_setup(th, K, B)
    xk, w, yk, h, d0, d1 = _bin_params(X, Y, d, yc, True, K)
    s = h / w
    dy = yc - yk
    dd = d0 + d1 - 2 * s
    a = h * (s - d0) + dy * dd
    b = h * d0 - dy * dd
    c = -s * dy
    disc = (b * b - 4 * a * c).clamp(min=0)
    xi = ((2 * c) / (-b - torch.sqrt(disc))).clamp(0, 1)
    xi = torch.nan_to_num(xi, nan=0.0)
    x = (xk + xi * w).clamp(-B, B)
    omx = 1 - xi
    t = xi * omx
    den = s + dd * t
    num = d1 * xi * xi + 2 * s * t + d0 * omx * omx
    ld = -(torch.log(s * s * num) - 2 * torch.log(den))
    return torch.where(inside, x, y), torch.where(inside, ld, torch.zeros_like(ld))


class Xform:
    def __init__(self, kind, clamp, bins, bound):
        self.kind, self.clamp, self.bins, self.bound = kind, clamp, bins, bound
        self.nt = 2 if kind == "affine" else 3 * bins - 1

    def fwd(self, x, th):
        return affine_fwd(x, th, self.clamp) if self.kind == "affine" else rqs_fwd(x, th, self.bins, self.bound)

    def inv(self, y, th):
        return affine_inv(y, th, self.clamp) if self.kind == "affine" else rqs_inv(y, th, self.bins, self.bound)


# ---------------------------------------------------------------- layers
# forward(x) -> (y, logdet per row); inverse(y) -> (x, logdet of the inverse per row)

class ActNorm(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(D))
        self.s = nn.Parameter(torch.zeros(D))

    def data_init(self, x):
        with torch.no_grad():
            xd = x.double()
            self.b.copy_(-xd.mean(0))
            self.s.copy_(-torch.log(xd.std(0, unbiased=True) + 1e-6))

    def forward(self, x):
        return (x + self.b) * torch.exp(self.s), self.s.sum().expand(x.shape[0])

    def inverse(self, y):
        return y * torch.exp(-self.s) - self.b, (-self.s.sum()).expand(y.shape[0])


class Reverse(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.register_buffer("perm", torch.arange(D - 1, -1, -1))

    def forward(self, x):
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y):
        return y[:, self.perm], y.new_zeros(y.shape[0])


class LULinear(nn.Module):
    def __init__(self, D, gen):
        super().__init__()
        A = torch.randn(D, D, generator=gen, dtype=torch.float64)
        Q, _ = torch.linalg.qr(A)
        P, L, U = torch.linalg.lu(Q)
        diag = torch.diagonal(U)
        w = torch.tril(L, -1) + torch.triu(U, 1) + torch.diag(torch.log(diag.abs()))
        self.register_buffer("P", P.float())
        self.register_buffer("sign", torch.where(diag < 0, -1.0, 1.0).float())
        self.register_buffer("eye", torch.eye(D))
        self.w = nn.Parameter(w.float())

    def _factors(self):
        L = torch.tril(self.w, -1) + self.eye
        U = torch.triu(self.w, 1) + torch.diag(self.sign * torch.exp(torch.diagonal(self.w)))
        return L, U

    def weight(self):
        L, U = self._factors()
        return self.P @ (L @ U)

    def forward(self, x):
        return x @ self.weight().t(), torch.diagonal(self.w).sum().expand(x.shape[0])

    def inverse(self, y):
        L, U = self._factors()
        # y = x W^T, W = P L U  =>  x^T = U^-1 L^-1 P^T y^T
        r = self.P.t() @ y.t()
        r = torch.linalg.solve_triangular(L, r, upper=False, unitriangular=True)
        r = torch.linalg.solve_triangular(U, r, upper=True)
        return r.t(), (-torch.diagonal(self.w).sum()).expand(y.shape[0])


class Coupling(nn.Module):
    def __init__(self, D, parity, xf, hidden, n_hidden, gen):
        super().__init__()
        ia = [i for i in range(D) if i % 2 == parity]
        ib = [i for i in range(D) if i % 2 != parity]
        self.xf = xf
        self.register_buffer("ia", torch.tensor(ia))
        self.register_buffer("ib", torch.tensor(ib))
        self.register_buffer("unperm", torch.argsort(torch.tensor(ia + ib)))
        self.net = MLP(len(ia), len(ib) * xf.nt, hidden, n_hidden, gen)

    def _theta(self, xa):
        return self.net(xa).view(xa.shape[0], self.ib.numel(), self.xf.nt)

    def forward(self, x):
        xa = x[:, self.ia]
        yb, ld = self.xf.fwd(x[:, self.ib], self._theta(xa))
        return torch.cat([xa, yb], 1)[:, self.unperm], ld.sum(1)

    def inverse(self, y):
        ya = y[:, self.ia]
        xb, ld = self.xf.inv(y[:, self.ib], self._theta(ya))
        return torch.cat([ya, xb], 1)[:, self.unperm], ld.sum(1)


class Autoregressive(nn.Module):
    def __init__(self, D, xf, hidden, n_hidden, gen):
        super().__init__()
        self.D = D
        self.xf = xf
        self.made = MADE(D, xf.nt, hidden, n_hidden, gen)

    def forward(self, x):
        th = self.made(x).view(x.shape[0], self.D, self.xf.nt)
        y, ld = self.xf.fwd(x, th)
        return y, ld.sum(1)

    def inverse(self, y):
        # coordinate j of x only needs x[:j]: D passes of the MADE (as renflow)
        x = torch.zeros_like(y)
        ld = y.new_zeros(y.shape[0])
        for j in range(self.D):
            th = self.made(x).view(y.shape[0], self.D, self.xf.nt)[:, j]
            xj, lj = self.xf.inv(y[:, j:j + 1], th[:, None])
            x = x.clone()
            x[:, j] = xj[:, 0]
            ld = ld + lj[:, 0]
        return x, ld


class Flow(nn.Module):
    def __init__(self, flow, D, blocks, hidden, n_hidden=2, bins=8, bound=5.0, clamp=3.0, seed=1):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        aff = Xform("affine", clamp, bins, bound)
        rqs = Xform("rqs", clamp, bins, bound)
        layers = []
        for b in range(blocks):
            layers.append(ActNorm(D))
            if flow == "realnvp":
                layers.append(Coupling(D, b % 2, aff, hidden, n_hidden, gen))
            elif flow == "glow":
                layers += [LULinear(D, gen), Coupling(D, 0, aff, hidden, n_hidden, gen)]
            elif flow == "maf":
                layers += [Autoregressive(D, aff, hidden, n_hidden, gen), Reverse(D)]
            elif flow == "nsf":
                layers += [LULinear(D, gen), Coupling(D, 0, rqs, hidden, n_hidden, gen)]
            elif flow == "nsf-ar":
                layers += [LULinear(D, gen), Autoregressive(D, rqs, hidden, n_hidden, gen)]
            else:
                raise ValueError("unknown flow " + flow)
        self.layers = nn.ModuleList(layers)
        self.register_buffer("shift", torch.zeros(D))
        self.register_buffer("scale", torch.ones(D))
        self.D = D

    def fit_standardizer(self, x):
        xd = x.double()
        sd = xd.std(0, unbiased=False)
        sd = torch.where(torch.isfinite(sd) & (sd.float() >= torch.finfo(torch.float32).tiny), sd,
                         torch.ones_like(sd))
        self.shift.copy_(xd.mean(0).float())
        self.scale.copy_(sd.float())

    def data_init(self, x):
        with torch.no_grad():
            u = (x - self.shift) / self.scale
            for l in self.layers:
                if isinstance(l, ActNorm):
                    l.data_init(u)
                u, _ = l(u)

    def forward(self, x):
        """x -> (z, log|det dz/dx|) including the standardisation."""
        z = (x - self.shift) / self.scale
        ld = (-torch.log(self.scale).sum()).expand(x.shape[0])
        for l in self.layers:
            z, d = l(z)
            ld = ld + d
        return z, ld

    def log_prob(self, x):
        z, ld = self(x)
        return -0.5 * (z * z).sum(1) - 0.5 * self.D * LOG_2PI + ld

    def inverse(self, z):
        x = z
        for l in reversed(self.layers):
            x, _ = l.inverse(x)
        return x * self.scale + self.shift

    def sample(self, n, gen=None):
        return self.inverse(torch.randn(n, self.D, generator=gen))


# ---------------------------------------------------------------- training

def lr_schedule(lr, t, total, warmup, min_ratio=0.01):
    """renflow's rf_lr_schedule with cosine = 1."""
    if warmup > 0 and t < warmup:
        return lr * (t + 1) / warmup
    if total <= warmup:
        return lr
    prog = min(1.0, (t - warmup) / (total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))


def clip_grad_norm(params, max_norm):
    """Global L2 norm (as rf_clip_grad_norm): scale by max_norm / norm when above max_norm."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.sqrt(sum((g.double() * g.double()).sum() for g in grads)).item()
    if max_norm > 0 and norm > max_norm and math.isfinite(norm):
        k = max_norm / norm
        for g in grads:
            g.mul_(k)
    return norm


@torch.no_grad()
def eval_nll(model, x, chunk=1024):
    tot = 0.0
    for s in range(0, x.shape[0], chunk):
        tot -= model.log_prob(x[s:s + chunk]).double().sum().item()
    return tot / x.shape[0]


def load(path):
    a = np.load(path)
    if a.ndim == 1:
        a = a[:, None]
    a = a.reshape(a.shape[0], -1)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def train(args):
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    xtr = load(args.train)
    xte = load(args.test)
    if args.val:
        xva = load(args.val)
    else:
        perm = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(args.seed ^ 0x5EED))
        k = int(0.1 * xtr.shape[0])
        xtr, xva = xtr[perm[k:]], xtr[perm[:k]]
    n, D = xtr.shape
    model = Flow(args.flow, D, args.blocks, args.hidden, args.n_hidden, args.bins, args.bound, args.clamp,
                 seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    model.fit_standardizer(xtr)
    m = min(n, args.init_batch)
    if m >= 2:
        model.data_init(xtr[torch.randperm(n, generator=gen)[:m]])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)

    B = min(args.batch, n)
    per_epoch = (n + B - 1) // B
    total = per_epoch * args.epochs
    warmup = int(args.warmup * total)
    step = 0
    samples = 0
    skipped = 0
    train_seconds = 0.0
    best_val, best_epoch, bad_epochs = math.inf, -1, 0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    train_curve, val_curve = [], []
    t_wall = time.perf_counter()
    epochs_run = 0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum, loss_n = 0.0, 0
        for b in range(per_epoch):
            xb = xtr[perm[b * B:(b + 1) * B]]
            for p in params:
                p.grad = None
            loss = -model.log_prob(xb).mean()
            loss.backward()
            gnorm = clip_grad_norm(params, args.clip)
            lv = loss.item()
            if not (math.isfinite(lv) and math.isfinite(gnorm)):
                skipped += 1
                step += 1
                continue
            lr = lr_schedule(args.lr, step, total, warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            step += 1
            samples += xb.shape[0]
            loss_sum += lv * xb.shape[0]
            loss_n += xb.shape[0]
        train_seconds += time.perf_counter() - t0
        tr = loss_sum / loss_n if loss_n else math.nan
        vl = eval_nll(model, xva) if xva.shape[0] > 0 else tr
        train_curve.append(tr)
        val_curve.append(vl)
        epochs_run = epoch + 1
        if math.isfinite(vl) and vl < best_val:
            best_val, best_epoch, bad_epochs = vl, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if args.progress:
            print("epoch %3d/%d  train %.4f  val %.4f  %8.0f samples/s" %
                  (epoch + 1, args.epochs, tr, vl, samples / train_seconds if train_seconds else 0),
                  file=sys.stderr)
        if args.patience > 0 and bad_epochs >= args.patience:
            break
    wall_seconds = time.perf_counter() - t_wall
    rss_train_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    model.load_state_dict(best_state)
    model.eval()

    t0 = time.perf_counter()
    test_nll = eval_nll(model, xte)
    eval_seconds = time.perf_counter() - t0

    sgen = torch.Generator().manual_seed(args.seed + 2)
    with torch.no_grad():
        model.sample(min(16, args.n_samples), sgen)  # warm-up (first-call allocations)
        t0 = time.perf_counter()
        done = 0
        while done < args.n_samples:
            k = min(args.sample_batch, args.n_samples - done)
            xs = model.sample(k, sgen)
            done += k
        sample_seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in params)
    return {
        "impl": "torch",
        "torch_version": torch.__version__,
        "flow": args.flow,
        "dim": D,
        "blocks": args.blocks,
        "hidden": args.hidden,
        "n_params": n_params,
        "threads": args.threads,
        "batch": B,
        "epochs_run": epochs_run,
        "steps": step,
        "skipped_steps": skipped,
        "best_epoch": best_epoch + 1,
        "best_val_nll": best_val,
        "final_train_nll": train_curve[-1] if train_curve else math.nan,
        "train_curve": train_curve,
        "val_curve": val_curve,
        "train_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "samples_per_sec": samples / train_seconds if train_seconds > 0 else 0.0,
        "samples_per_sec_wall": samples / wall_seconds if wall_seconds > 0 else 0.0,
        "test_nll": test_nll,
        "eval_seconds": eval_seconds,
        "sampling_per_sec": args.n_samples / sample_seconds if sample_seconds > 0 else 0.0,
        "sample_finite": bool(torch.isfinite(xs).all().item()),
        "peak_rss_train_mb": rss_train_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_after_import_mb": RSS_AFTER_IMPORT_MB,
    }


# ---------------------------------------------------------------- self-test

def self_test():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + msg)
        ok = ok and bool(cond)

    # spline: theta = 0 is the identity; round trip and log-dets for random theta
    K, B = 8, 5.0
    x = torch.linspace(-7, 7, 1001, dtype=torch.float64)
    th0 = torch.zeros(1001, 3 * K - 1, dtype=torch.float64)
    y, ld = rqs_fwd(x, th0, K, B)
    check((y - x).abs().max() < 1e-12 and ld.abs().max() < 1e-12, "spline theta=0 is the identity")
    th = 2 * torch.randn(1001, 3 * K - 1, dtype=torch.float64)
    y, ld = rqs_fwd(x, th, K, B)
    xr, ldi = rqs_inv(y, th, K, B)
    check((xr - x).abs().max() < 1e-9 and (ld + ldi).abs().max() < 1e-9, "spline inverse round trip")
    xg = x.clone().requires_grad_(True)
    yg, _ = rqs_fwd(xg, th, K, B)
    (dydx,) = torch.autograd.grad(yg.sum(), xg)
    check((torch.log(dydx) - ld).abs().max() < 1e-9, "spline log-det equals log dy/dx")
    y1, _ = rqs_fwd(x, th[:1].expand(1001, -1), K, B)
    check(bool((y1[1:] >= y1[:-1]).all()), "spline is monotone in x for a fixed theta")
    xin = torch.tensor([-5.0, 5.0], dtype=torch.float64)
    yb, _ = rqs_fwd(xin, th[:2], K, B)
    check((yb - xin).abs().max() < 1e-12, "spline maps the interval ends to themselves")

    # MADE: output block i depends only on x[:i]
    for D in (1, 2, 5):
        made = MADE(D, 3, 16, 2, torch.Generator().manual_seed(1))
        with torch.no_grad():
            made.out.weight.normal_()
            made.out.weight.mul_(made.out.mask)
        xx = torch.randn(1, D, requires_grad=True)
        J = torch.autograd.functional.jacobian(lambda v: made(v), xx)[0, :, 0, :]
        allowed = (torch.arange(D * 3)[:, None] // 3 > torch.arange(D)[None, :]).float()
        check(bool(((J != 0).float() <= allowed).all()), "MADE D=%d is autoregressive" % D)

    data = torch.randn(512, 14, dtype=torch.float32) * torch.linspace(0.5, 4, 14) + torch.linspace(-3, 3, 14)
    for flow in FLOWS:
        for D in (8, 14):
            x = data[:, :D].contiguous()
            m = Flow(flow, D, 3, 32, seed=3)
            m.fit_standardizer(x)
            with torch.no_grad():
                u = (x - m.shift) / m.scale
                expect = (-0.5 * (u * u).sum(1) - 0.5 * D * LOG_2PI - torch.log(m.scale).sum())
                lp = m.log_prob(x)
                # every coupling / autoregressive layer of a fresh model is the identity
                ident = True
                h = u
                for l in m.layers:
                    y, d = l(h)
                    if isinstance(l, (Coupling, Autoregressive)):
                        ident = ident and bool((y - h).abs().max() < 1e-5) and bool(d.abs().max() < 1e-5)
                    h = y
            check(ident, "%s D=%d: fresh coupling/AR layers are the identity" % (flow, D))
            check((lp - expect).abs().max() < 2e-3,
                  "%s D=%d: fresh log p(x) = N(0,I) log-density of standardised x + std log-det "
                  "(max diff %.2e)" % (flow, D, (lp - expect).abs().max()))
            # perturb every parameter, then check invertibility and the log-det by autograd
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(0.1 * torch.randn_like(p))
                for mod in m.modules():
                    if isinstance(mod, MaskedLinear):
                        mod.weight.mul_(mod.mask)
                m.data_init(x)
                z, ld = m(x)
                xr = m.inverse(z)
            rel = ((xr - x).abs() / (1 + x.abs())).max()
            check(rel < 1e-3, "%s D=%d: inverse(forward(x)) = x (max rel err %.1e)" % (flow, D, rel))
            x1 = x[:3].double()
            md = m.double()
            J = torch.stack([torch.autograd.functional.jacobian(lambda v: md(v[None])[0][0], r) for r in x1])
            ldj = torch.linalg.slogdet(J)[1]
            with torch.no_grad():
                _, ld1 = md(x1)
            check((ldj - ld1).abs().max() < 1e-6, "%s D=%d: log-det equals log|det J| by autograd" % (flow, D))
            m.float()
            with torch.no_grad():
                s = m.sample(64, torch.Generator().manual_seed(5))
            check(bool(torch.isfinite(s).all()), "%s D=%d: samples are finite" % (flow, D))
    print("self-test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


# ---------------------------------------------------------------- renflow model files

def load_rf(path):
    """Reads a renflow .rf model file into an equivalent Flow (same parameters, permutation and
    signs), checking that the architecture is one this reference implements."""
    import hashlib
    import struct
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
    spec = head["spec"]
    D = spec["dim"]
    params = np.frombuffer(buf, dtype="<f4", count=n_params, offset=off)
    off += 4 * n_params
    shift = np.frombuffer(buf, dtype="<f4", count=D, offset=off)
    scale = np.frombuffer(buf, dtype="<f4", count=D, offset=off + 4 * D)
    if spec["act"] != "relu" or spec["residual"] or spec["base"] != "normal":
        raise ValueError("%s: act=%s residual=%s base=%s is not covered by the reference (relu, no residual, normal)"
                         % (path, spec["act"], spec["residual"], spec["base"]))
    m = Flow(spec["flow"], D, spec["blocks"], spec["hidden"], spec["n_hidden"], spec["bins"], spec["bound"],
             spec["clamp"])
    layers = head["layers"]
    if len(layers) != len(m.layers):
        raise ValueError("%s: %d layers, the reference builds %d" % (path, len(layers), len(m.layers)))
    pos = [0]

    def take(t):
        n = t.numel()
        t.data.copy_(torch.from_numpy(params[pos[0]:pos[0] + n].copy()).view_as(t))
        pos[0] += n

    def take_dense(net):
        for lin in list(net.hidden) + [net.out]:
            take(lin.weight)
            take(lin.bias)

    expect = {ActNorm: "actnorm", LULinear: "lu_linear", Coupling: "coupling", Autoregressive: "autoregressive",
              Reverse: "permute"}
    with torch.no_grad():
        for j, l in zip(layers, m.layers):
            if j["kind"] != expect[type(l)]:
                raise ValueError("%s: layer kind %s where the reference has %s" % (path, j["kind"], expect[type(l)]))
            if isinstance(l, ActNorm):
                take(l.b)
                take(l.s)
            elif isinstance(l, LULinear):
                perm = j["perm"]
                P = torch.zeros(D, D)
                P[torch.arange(D), torch.tensor(perm)] = 1.0  # W[i] = (L U)[perm[i]]
                l.P.copy_(P)
                l.sign.copy_(torch.tensor(j["sign"], dtype=torch.float32))
                take(l.w)
            elif isinstance(l, Coupling):
                if j["parity"] != int(l.ia[0]):  # the first pass-through index is the parity
                    raise ValueError("%s: coupling parity %d differs from the reference" % (path, j["parity"]))
                take_dense(l.net)
            elif isinstance(l, Autoregressive):
                take_dense(l.made)
                for lin in list(l.made.hidden) + [l.made.out]:
                    if (lin.weight * (1 - lin.mask)).abs().max() > 0:
                        raise ValueError("%s: a weight the reference's MADE mask removes is non-zero" % path)
            elif isinstance(l, Reverse):
                if list(j["perm"]) != l.perm.tolist():
                    raise ValueError("%s: permutation differs from the reference's reversal" % path)
        if pos[0] != n_params:
            raise ValueError("%s: %d parameters, the reference used %d" % (path, n_params, pos[0]))
        m.shift.copy_(torch.from_numpy(shift.copy()))
        m.scale.copy_(torch.from_numpy(scale.copy()))
    return m


def main():
    if ARGS.self_test:
        sys.exit(self_test())
    res = train(ARGS)
    if ARGS.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if not k.endswith("_curve"):
                print("%-22s %s" % (k, v))


if __name__ == "__main__":
    main()
