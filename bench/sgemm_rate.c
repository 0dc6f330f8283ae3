/* OpenBLAS's own SGEMM rate at the shapes one hidden layer of a conditioner uses in a training
 * step (batch n, width H), so that a flow's training speed can be stated as a fraction of it:
 *   forward  Z[n x H]  = X[n x H] W[H x H]^T      (NoTrans, Trans)
 *   grad W   dW[H x H] += dZ[n x H]^T X[n x H]    (Trans, NoTrans)
 *   grad X   dX[n x H] = dZ[n x H] W[H x H]       (NoTrans, NoTrans)
 * Each takes 2 n H H flops. Prints one JSON object per (batch, hidden) pair on stdout.
 *
 * Two ways to use T cores are measured, and the better one is the reference ("step_gflops"):
 *   threaded: one SGEMM call at a time on OpenBLAS's T threads ("threaded_gflops");
 *   parallel: T threads each running their own single-threaded SGEMMs at the same time, on
 *             batch / T rows each ("parallel_gflops"), which is how renflow uses OpenBLAS.
 * Each rate is the best of several windows (other processes on a shared machine only slow a
 * measurement down, so the best window is the closest to the machine's own rate).
 *
 * build: cc -O2 -pthread -o build/bench/sgemm_rate bench/sgemm_rate.c -lopenblas
 * usage: sgemm_rate [--threads T] [--batch N[,N...]] [--hidden H[,H...]] [--seconds S] */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <pthread.h>
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

/* ---- T threads, each with its own matrices (batch / T rows), single-threaded SGEMM ---- */
typedef struct par_arg {
    shape sh[3];
    float *buf[6];
    pthread_barrier_t *bar;
    double seconds;
    long reps;     /* repetitions of the three products done in the window */
    int stop_at;   /* set by thread 0 once its window is over */
    volatile int *stop;
} par_arg;

static void *par_run(void *p) {
    par_arg *a = p;
    for (int k = 0; k < 3; k++) run(&a->sh[k]); /* warm up */
    pthread_barrier_wait(a->bar);
    const double t0 = now();
    long reps = 0;
    while (!*a->stop) {
        for (int k = 0; k < 3; k++) run(&a->sh[k]);
        reps++;
        if (a->stop_at && now() - t0 > a->seconds) *a->stop = 1;
    }
    a->reps = reps;
    return NULL;
}

static float *rnd(size_t n);

/* GFLOP/s of T concurrent single-threaded step triples; best of 5 windows. */
static double parallel_rate(int T, int n, int H, double seconds) {
    const int rows = n / T > 0 ? n / T : 1;
    par_arg *a = calloc((size_t)T, sizeof *a);
    pthread_t *tid = calloc((size_t)T, sizeof *tid);
    if (!a || !tid) {
        fprintf(stderr, "sgemm_rate: out of memory\n");
        exit(1);
    }
    for (int t = 0; t < T; t++) {
        float *X = rnd((size_t)rows * H), *W = rnd((size_t)H * H), *Z = rnd((size_t)rows * H);
        float *dZ = rnd((size_t)rows * H), *dW = rnd((size_t)H * H), *dX = rnd((size_t)rows * H);
        const shape sh[3] = {
            {"forward", 0, 1, rows, H, H, X, W, H, H, 0.0f, Z, H},
            {"grad_w", 1, 0, H, H, rows, dZ, X, H, H, 1.0f, dW, H},
            {"grad_x", 0, 0, rows, H, H, dZ, W, H, H, 0.0f, dX, H},
        };
        memcpy(a[t].sh, sh, sizeof sh);
        float *b[6] = {X, W, Z, dZ, dW, dX};
        memcpy(a[t].buf, b, sizeof b);
    }
    openblas_set_num_threads(1);
    const double flops = 3 * 2.0 * rows * (double)H * H;
    double best = 0;
    for (int w = 0; w < 5; w++) {
        pthread_barrier_t bar;
        volatile int stop = 0;
        pthread_barrier_init(&bar, NULL, (unsigned)T);
        for (int t = 0; t < T; t++) {
            a[t].bar = &bar;
            a[t].seconds = seconds / 5;
            a[t].stop_at = t == 0;
            a[t].stop = &stop;
        }
        const double t0 = now();
        for (int t = 1; t < T; t++) pthread_create(&tid[t], NULL, par_run, &a[t]);
        par_run(&a[0]);
        for (int t = 1; t < T; t++) pthread_join(tid[t], NULL);
        const double dt = now() - t0;
        long reps = 0;
        for (int t = 0; t < T; t++) reps += a[t].reps;
        pthread_barrier_destroy(&bar);
        if (flops * (double)reps / dt / 1e9 > best) best = flops * (double)reps / dt / 1e9;
    }
    for (int t = 0; t < T; t++)
        for (int k = 0; k < 6; k++) free(a[t].buf[k]);
    free(a);
    free(tid);
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
            openblas_set_num_threads(threads);
            for (int k = 0; k < 3; k++) {
                r[k] = rate(&sh[k], seconds);
                inv += 1.0 / r[k];
            }
            /* the three products have equal flop counts: the combined rate is the harmonic mean */
            const double threaded = 3.0 / inv;
            const double par = threads > 1 ? parallel_rate(threads, n, H, seconds) : threaded;
            printf("{\"threads\": %d, \"batch\": %d, \"hidden\": %d, \"forward_gflops\": %.3f, "
                   "\"grad_w_gflops\": %.3f, \"grad_x_gflops\": %.3f, \"threaded_gflops\": %.3f, "
                   "\"parallel_gflops\": %.3f, \"step_gflops\": %.3f}\n",
                   threads, n, H, r[0], r[1], r[2], threaded, par, threaded > par ? threaded : par);
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
