#!/usr/bin/python3
"""Optuna's side of bench/bench_samplers.sh, in the line format of bench/sampler_bench.c.

Runs with Debian's python3-optuna (/usr/bin/python3; Optuna 3.1 on Debian 12).

  optuna_ref.py suite [--seeds N] [--seed0 S] [--trials N] [--samplers random,tpe,tpe-mv]
                      [--functions branin,hartmann6]
      best value after N trials (100) for seeds S..S+N-1 (0..19); in-memory studies (functions:
      branin, hartmann6, and as in sampler_bench.c hartmann3, styblinski5, rosenbrock4, levy4,
      ackley5, camel, goldstein):
      "suite optuna FUNCTION SAMPLER SEED BEST". tpe = TPESampler() (Optuna's default:
      univariate), tpe-mv = TPESampler(multivariate=True), random = RandomSampler().
  optuna_ref.py overhead [--trials N] [--asks K] [--samplers random,tpe,tpe-mv]
      CPU time (time.process_time) per trial of K ask + suggest + tell rounds on Hartmann-6 after N
      (1000) completed random trials were added to an in-memory study:
      "overhead optuna SAMPLER asktell MS_PER_TRIAL"
"""
import argparse
import math
import sys
import time
import warnings

import optuna

warnings.filterwarnings("ignore")
optuna.logging.set_verbosity(optuna.logging.WARNING)

# the same functions as src/search/testfuncs.c
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - 1e-4 * P[i][j]) ** 2 for j in range(6))) for i in range(4))


def branin(x):
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


# further functions, as in bench/sampler_bench.c
def hartmann3(x):
    a = [[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]]
    p = [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
    return -sum(ALPHA[i] * math.exp(-sum(a[i][j] * (x[j] - 1e-4 * p[i][j]) ** 2 for j in range(3))) for i in range(4))


def styblinski5(x):
    return 0.5 * sum(v ** 4 - 16 * v * v + 5 * v for v in x)


def rosenbrock4(x):
    return sum(100 * (x[j + 1] - x[j] ** 2) ** 2 + (1 - x[j]) ** 2 for j in range(3))


def levy4(x):
    w = [1 + (v - 1) / 4 for v in x]
    s = math.sin(math.pi * w[0]) ** 2
    for j in range(3):
        s += (w[j] - 1) ** 2 * (1 + 10 * math.sin(math.pi * w[j] + 1) ** 2)
    return s + (w[3] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[3]) ** 2)


def ackley5(x):
    a = sum(v * v for v in x)
    b = sum(math.cos(2 * math.pi * v) for v in x)
    return -20 * math.exp(-0.2 * math.sqrt(a / 5)) - math.exp(b / 5) + 20 + math.e


def camel(x):
    a, b = x
    return (4 - 2.1 * a * a + a ** 4 / 3) * a * a + a * b + (-4 + 4 * b * b) * b * b


def goldstein(x):  # log of Goldstein-Price
    a, b = x
    t1 = 1 + (a + b + 1) ** 2 * (19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b)
    t2 = 30 + (2 * a - 3 * b) ** 2 * (18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b)
    return math.log(t1 * t2)


def box(d, lo, hi):
    return [("x%d" % (j + 1), lo, hi) for j in range(d)]


FUNCS = {
    "branin": (branin, [("x1", -5.0, 10.0), ("x2", 0.0, 15.0)]),
    "hartmann6": (hartmann6, box(6, 0.0, 1.0)),
    "hartmann3": (hartmann3, box(3, 0.0, 1.0)),
    "styblinski5": (styblinski5, box(5, -5.0, 5.0)),
    "rosenbrock4": (rosenbrock4, box(4, -2.0, 2.0)),
    "levy4": (levy4, box(4, -10.0, 10.0)),
    "ackley5": (ackley5, box(5, -32.768, 32.768)),
    "camel": (camel, box(2, -2.0, 2.0)),
    "goldstein": (goldstein, box(2, -2.0, 2.0)),
}


def make_sampler(name, seed):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "tpe-mv":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    raise SystemExit("optuna_ref.py: unknown sampler %s (random, tpe, tpe-mv)" % name)


def objective_of(fname):
    f, dom = FUNCS[fname]

    def obj(trial):
        return f([trial.suggest_float(n, lo, hi) for n, lo, hi in dom])

    return obj


def cmd_suite(a):
    for fname in a.functions.split(","):
        if fname not in FUNCS:
            raise SystemExit("optuna_ref.py: unknown function %s" % fname)
        for smp in a.samplers.split(","):
            for seed in range(a.seed0, a.seed0 + a.seeds):
                st = optuna.create_study(sampler=make_sampler(smp, seed))
                st.optimize(objective_of(fname), n_trials=a.trials)
                print("suite\toptuna\t%s\t%s\t%d\t%.17g" % (fname, smp, seed, st.best_value), flush=True)


def cmd_overhead(a):
    f, dom = FUNCS["hartmann6"]
    rs = optuna.samplers.RandomSampler(seed=12345)
    filler = optuna.create_study(sampler=rs)
    filler.optimize(objective_of("hartmann6"), n_trials=a.trials)
    done = [t for t in filler.trials]
    for smp in a.samplers.split(","):
        st = optuna.create_study(sampler=make_sampler(smp, 1))
        st.add_trials(done)
        t0 = time.process_time()
        for _ in range(a.asks):
            t = st.ask()
            x = [t.suggest_float(n, lo, hi) for n, lo, hi in dom]
            st.tell(t, f(x))
        per = (time.process_time() - t0) / a.asks
        print("overhead\toptuna\t%s\tasktell\t%.4f" % (smp, 1e3 * per), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite")
    s.add_argument("--seeds", type=int, default=20)
    s.add_argument("--seed0", type=int, default=0)
    s.add_argument("--trials", type=int, default=100)
    s.add_argument("--samplers", default="random,tpe,tpe-mv")
    s.add_argument("--functions", default="branin,hartmann6")
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=1000)
    o.add_argument("--asks", type=int, default=20)
    o.add_argument("--samplers", default="random,tpe,tpe-mv")
    a = ap.parse_args()
    print("# optuna %s, python %s" % (optuna.__version__, sys.version.split()[0]), file=sys.stderr)
    if a.cmd == "suite":
        cmd_suite(a)
    else:
        cmd_overhead(a)


if __name__ == "__main__":
    main()
