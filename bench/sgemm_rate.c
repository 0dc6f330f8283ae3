/* OpenBLAS's own SGEMM rate at the shapes one hidden layer of a conditioner uses in a training
 * step (batch n, width H), so that a flow's training speed can be stated as a fraction of it:
 *   forward  Z[n x H]  = X[n x H] W[H x H]^T      (NoTrans, Trans)
 *   grad W   dW[H x H] += dZ[n x H]^T X[n x H]    (Trans, NoTrans)
 *   grad X   dX[n x H] = dZ[n x H] W[H x H]       (NoTrans, NoTrans)
 * Each takes 2 n H H flops. Prints one JSON object per (batch, hidden) pair on stdout.
 *
 * build: cc -O2 -o build/bench/sgemm_rate bench/sgemm_rate.c -lopenblas
 * usage: sgemm_rate [--threads T] [--batch N[,N...]] [--hidden H[,H...]] [--seconds S] */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_list(const char *s, int *out, int max) {
    int k = 0;
    char *buf = strdup(s), *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && k < max; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v < 1 || v > 65536) {
            fprintf(stderr, "sgemm_rate: bad size '%s'\n", t);
            free(buf);
            exit(2);
        }
        out[k++] = v;
    }
    free(buf);
    return k;
}

typedef struct {
    const char *name;
    int ta, tb, M, N, K;
    const float *A, *B;
    int lda, ldb;
    float beta;
    float *C;
    int ldc;
} shape;

static void run(const shape *s) {
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                s->M, s->N, s->K, 1.0f, s->A, s->lda, s->B, s->ldb, s->beta, s->C, s->ldc);
}

/* GFLOP/s of repeated calls: the best of 5 windows of seconds / 5 each (after a warm-up), so
 * that a burst of activity from other processes does not decide the result. */
static double rate(const shape *s, double seconds) {
    for (int i = 0; i < 3; i++) run(s);
    const double flops = 2.0 * s->M * s->N * (double)s->K;
    double best = 0;
    for (int w = 0; w < 5; w++) {
        long reps = 0;
        const double t0 = now();
        double t;
        do {
            for (int i = 0; i < 4; i++) run(s);
            reps += 4;
            t = now() - t0;
        } while (t < seconds / 5);
        if (flops * (double)reps / t / 1e9 > best) best = flops * (double)reps / t / 1e9;
    }
    return best;
}

static float *rnd(size_t n) {
    float *p = malloc(sizeof(float) * n);
    if (!p) {
        fprintf(stderr, "sgemm_rate: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

int main(int argc, char **argv) {
    int threads = 1, batches[16] = {256}, hiddens[16] = {64, 256}, nb = 1, nh = 2;
    double seconds = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) nb = parse_list(argv[++i], batches, 16);
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc) nh = parse_list(argv[++i], hiddens, 16);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads T] [--batch N[,N...]] [--hidden H[,H...]] [--seconds S]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    openblas_set_num_threads(threads);
    srand(1);
    for (int bi = 0; bi < nb; bi++)
        for (int hi = 0; hi < nh; hi++) {
            const int n = batches[bi], H = hiddens[hi];
            float *X = rnd((size_t)n * H), *W = rnd((size_t)H * H), *Z = rnd((size_t)n * H);
            float *dZ = rnd((size_t)n * H), *dW = rnd((size_t)H * H), *dX = rnd((size_t)n * H);
            const shape sh[3] = {
                {"forward", 0, 1, n, H, H, X, W, H, H, 0.0f, Z, H},
                {"grad_w", 1, 0, H, H, n, dZ, X, H, H, 1.0f, dW, H},
                {"grad_x", 0, 0, n, H, H, dZ, W, H, H, 0.0f, dX, H},
            };
            double r[3], inv = 0;
            for (int k = 0; k < 3; k++) {
                r[k] = rate(&sh[k], seconds);
                inv += 1.0 / r[k];
            }
            /* the three products have equal flop counts: the combined rate is the harmonic mean */
            printf("{\"threads\": %d, \"batch\": %d, \"hidden\": %d, \"forward_gflops\": %.3f, "
                   "\"grad_w_gflops\": %.3f, \"grad_x_gflops\": %.3f, \"step_gflops\": %.3f}\n",
                   threads, n, H, r[0], r[1], r[2], 3.0 / inv);
            fflush(stdout);
            free(X);
            free(W);
            free(Z);
            free(dZ);
            free(dW);
            free(dX);
        }
    return 0;
}
