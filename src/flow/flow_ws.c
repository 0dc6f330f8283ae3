/* Running a flow: workspaces sized once, forward / inverse / log-density / loss + gradient /
 * sampling. With memory_saving the forward keeps no per-layer activations and the backward
 * rebuilds each layer's input from its output through the inverse (exact up to round-off).
 *
 * Threads. At the sizes flows train at (a batch of 256 through 64..256-wide conditioners) a
 * threaded GEMM costs more in synchronisation than it gains, so a batch is split into shards of
 * rows instead, one per thread: shard s owns rows [s n / S, (s + 1) n / S) and its own buffers,
 * and runs every layer single-threaded. For a gradient, shard 0 accumulates into f->grads, the
 * others into private buffers, which are then added to f->grads in shard order (each entry is
 * summed in the same order whatever thread does it). So a result depends on the number of shards
 * but on nothing else: it is reproducible for a given thread count. Inside a shard the layers'
 * own OpenMP loops (if any) run as inactive nested regions, i.e. serially.
 * Shards need single-threaded BLAS (several threads calling a threaded OpenBLAS would fight over
 * its thread pool); rf_set_threads sets that. When BLAS is threaded anyway, one shard runs.
 * A shard processes its rows in chunks of at most `cap` rows (the buffers' size).
 *
 * The shards run on the workspace's own threads (shard 0 on the caller's), not on OpenMP's: a
 * waiting thread spins for at most WS_SPIN_US and then sleeps, whatever OMP_WAIT_POLICY says. On a
 * busy machine OpenMP's default spin-waiting made two threads slower than one, because a spinning
 * thread holds the core that the thread it waits for needs. While a shard runs, OpenMP regions
 * that layers open inside it get one thread.
 *
 * Factored-out tails. A layer may touch only a prefix of each row (a time-series layer acts on
 * its scale's active prefix, rf_layer_prefix_ops); the floats after the prefixes of all later
 * layers are frozen, i.e. already final. The engine runs such layers through ops that neither
 * read nor write the rest of the row and carries the rest itself, once per scale rather than
 * once per layer: with a_k the prefix of layer k and live_k = max(a_k, ..., a_{L-1}) (the floats
 * of its input that it or a later layer reads),
 *  - forward: before layer k, the floats [live_k, live_{k-1}) of its input (frozen from here on)
 *    are copied to the buffer that ends up holding z; after it, [a_k, live_k) is copied from its
 *    input to its output when a later layer is wider (not in a tsflow, whose prefixes shrink).
 *    Layer k's input is valid on [0, live_{k-1}), z on all of [0, D).
 *  - inverse: the mirror image, the frozen floats taken from z;
 *  - backward: the gradient with respect to a frozen float is its gradient at z, so before layer k
 *    the floats [live_{k+1}, live_k) of dL/dz are copied into the gradient buffer (unless it is
 *    dL/dz's own buffer, which no later layer has written beyond live_{k+1}); the memory-saving
 *    backward rebuilds layer k's input from its output on [0, live_k) (its frozen floats are
 *    still where the forward left them, see rows_loss_grad). The gradient with respect to the
 *    flow's input is not formed.
 * The values are those of the layers' own ops (which copy the tail), bit for bit. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "flow_internal.h"
#include "renflow/model.h"

#define WS_MIN_ROWS 16 /* rows per shard at least (below that a thread costs more than it gains) */
#define WS_RED_BLOCK 4096 /* parameters per block of the gradient reduction */
#define WS_SPIN_US 50.0   /* a waiting thread spins this long, then sleeps */

/* ---------------------------------------------------------------- worker threads
 * Workers 1..n each run shard k of every job; the caller runs shard 0 and then waits for all. */
typedef void (*ws_task)(void *ctx, int shard);

typedef struct ws_pool {
    int n; /* worker threads started */
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    atomic_uint gen; /* bumped for every job */
    atomic_int left; /* workers that have not finished the current job */
    int quit;
    ws_task fn;
    void *ctx;
} ws_pool;

typedef struct ws_worker_arg {
    ws_pool *p;
    int k;
} ws_worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spins until *a != v (or, for the done-wait, *a == 0) for at most WS_SPIN_US; 1 if it happened. */
static int spin_gen(atomic_uint *a, unsigned v) {
    const double t0 = rf_now();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(a, memory_order_acquire) != v) return 1;
        cpu_relax();
        if (!(i & 63) && rf_now() - t0 > WS_SPIN_US * 1e-6) return 0;
    }
}

static int spin_zero(atomic_int *a) {
    const double t0 = rf_now();
    for (int i = 1;; i++) {
        if (atomic_load_explicit(a, memory_order_acquire) == 0) return 1;
        cpu_relax();
        if (!(i & 63) && rf_now() - t0 > WS_SPIN_US * 1e-6) return 0;
    }
}

static void *ws_worker(void *arg) {
    ws_pool *p = ((ws_worker_arg *)arg)->p;
    const int k = ((ws_worker_arg *)arg)->k;
    free(arg);
    omp_set_num_threads(1); /* OpenMP regions inside a shard run on this thread alone */
    unsigned seen = 0;
    for (;;) {
        if (!spin_gen(&p->gen, seen)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        pthread_mutex_lock(&p->mu);
        const int quit = p->quit;
        pthread_mutex_unlock(&p->mu);
        if (quit) return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, k);
        if (atomic_fetch_sub(&p->left, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* Starts up to n workers; returns the pool (possibly with fewer workers) or NULL. */
static ws_pool *pool_create(int n) {
    ws_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->tid = calloc((size_t)n, sizeof *p->tid);
    if (!p->tid) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->left, 0);
    for (int k = 1; k <= n; k++) {
        ws_worker_arg *a = malloc(sizeof *a);
        if (!a) break;
        a->p = p;
        a->k = k;
        if (pthread_create(&p->tid[k - 1], NULL, ws_worker, a) != 0) {
            free(a);
            break;
        }
        p->n = k;
    }
    return p;
}

static void pool_free(ws_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int k = 0; k < p->n; k++) pthread_join(p->tid[k], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

/* Runs fn(ctx, 0..n) with shard 0 on the calling thread; returns when all are done. */
static void pool_run(ws_pool *p, ws_task fn, void *ctx) {
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->left, p->n);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    const int omp_n = omp_get_max_threads();
    omp_set_num_threads(1);
    fn(ctx, 0);
    omp_set_num_threads(omp_n);
    if (!spin_zero(&p->left)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->left) != 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

typedef struct ws_shard {
    float **acts;   /* store: L+1 activations; memory-saving: 3 rotating buffers */
    float **caches; /* store: one per layer; memory-saving: caches[0] shared */
    float *scratch;
    float *ld, *tmp_ld, *logp, *dld, *dz, *dbuf, *G, *lpc;
    float *za;    /* the adapted latent (rf_flow_ws_set_latent_affine), allocated on first use */
    float *grads; /* shards >= 1 of a training workspace: n_params, zero between calls */
    double loss;  /* the shard's sum of per-row losses (rf_flow_loss_grad) */
} ws_shard;

/* How the engine runs layer k (see "Factored-out tails" at the top). */
typedef struct ws_layer {
    const rf_layer_ops *ops; /* rf_layer_prefix_ops */
    int a;                   /* floats of the prefix that the layer reads and writes */
    int live;                /* max(a_k, ..., a_{L-1}) */
} ws_layer;

struct rf_flow_ws {
    int max_batch, memory_saving, L, D, C;
    ws_layer *plan; /* L entries */
    int n_shards, cap, train;
    size_t n_params;
    size_t bytes, grad_bytes;
    ws_shard *sh;
    ws_pool *pool; /* n_shards - 1 workers (NULL for one shard) */
    rf_latent_affine la; /* la.row == NULL: none */
};

static float *ws_take(size_t n, size_t *bytes, int *fail) {
    float *p = rf_floats(n, NULL);
    if (!p) *fail = 1;
    *bytes += (n ? n : 1) * sizeof(float);
    return p;
}

static int n_acts(const rf_flow_ws *w) { return w->memory_saving ? 3 : w->L + 1; }
static int n_caches(const rf_flow_ws *w) { return w->memory_saving ? 1 : (w->L > 0 ? w->L : 1); }

static void shard_free(const rf_flow_ws *w, ws_shard *s) {
    if (s->acts)
        for (int k = 0; k < n_acts(w); k++) rf_free(s->acts[k]);
    if (s->caches)
        for (int k = 0; k < n_caches(w); k++) rf_free(s->caches[k]);
    free(s->acts);
    free(s->caches);
    rf_free(s->scratch);
    rf_free(s->ld);
    rf_free(s->tmp_ld);
    rf_free(s->logp);
    rf_free(s->dld);
    rf_free(s->dz);
    rf_free(s->dbuf);
    rf_free(s->G);
    rf_free(s->lpc);
    rf_free(s->za);
    rf_free(s->grads);
}

static int shard_alloc(const rf_flow *f, rf_flow_ws *w, ws_shard *s, int with_grads) {
    const int n = w->cap, D = w->D, L = w->L;
    int fail = 0;
    s->acts = calloc((size_t)n_acts(w), sizeof(float *));
    s->caches = calloc((size_t)n_caches(w), sizeof(float *));
    if (!s->acts || !s->caches) return 1;
    for (int k = 0; k < n_acts(w); k++) s->acts[k] = ws_take((size_t)n * D, &w->bytes, &fail);
    size_t max_cache = 0, max_scratch = 0;
    for (int k = 0; k < L; k++) {
        const rf_layer *l = f->layers[k];
        size_t c = l->ops->cache_floats(l, n), sc = l->ops->scratch_floats(l, n);
        if (!w->memory_saving) s->caches[k] = ws_take(c, &w->bytes, &fail);
        if (c > max_cache) max_cache = c;
        if (sc > max_scratch) max_scratch = sc;
    }
    if (w->memory_saving) s->caches[0] = ws_take(max_cache, &w->bytes, &fail);
    s->scratch = ws_take(max_scratch, &w->bytes, &fail);
    s->ld = ws_take((size_t)n, &w->bytes, &fail);
    s->tmp_ld = ws_take((size_t)n, &w->bytes, &fail);
    s->logp = ws_take((size_t)n, &w->bytes, &fail);
    s->dld = ws_take((size_t)n, &w->bytes, &fail);
    s->dz = ws_take((size_t)n * D, &w->bytes, &fail);
    s->dbuf = ws_take((size_t)n * D, &w->bytes, &fail);
    s->G = ws_take((size_t)n * w->C, &w->bytes, &fail);
    s->lpc = ws_take((size_t)n * w->C, &w->bytes, &fail);
    if (with_grads) s->grads = ws_take(w->n_params, &w->grad_bytes, &fail);
    return fail;
}

rf_flow_ws *rf_flow_ws_create_opts(const rf_flow *f, const rf_flow_ws_opts *o, rf_err *e) {
    if (!f || !o) {
        rf_err_set(e, RF_EARG, "workspace: no flow or options");
        return NULL;
    }
    if (o->max_batch < 1) {
        rf_err_set(e, RF_EARG, "workspace batch must be >= 1, got %d", o->max_batch);
        return NULL;
    }
    if (o->threads < 0 || o->threads > 1024) {
        rf_err_set(e, RF_EARG, "workspace threads must be in [0, 1024], got %d", o->threads);
        return NULL;
    }
    rf_flow_ws *w = rf_zalloc(sizeof *w, e);
    if (!w) return NULL;
    w->max_batch = o->max_batch;
    w->memory_saving = o->memory_saving != 0;
    w->L = f->n_layers;
    w->D = f->D;
    w->C = f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 1;
    w->n_params = f->n_params;
    w->train = !o->inference;
    w->plan = calloc((size_t)(w->L > 0 ? w->L : 1), sizeof *w->plan);
    if (!w->plan) {
        free(w);
        rf_err_set(e, RF_ENOMEM, "out of memory allocating a workspace");
        return NULL;
    }
    for (int k = w->L - 1; k >= 0; k--) {
        ws_layer *pl = &w->plan[k];
        pl->a = rf_layer_prefix_ops(f->layers[k], &pl->ops);
        if (pl->a > w->D || pl->a < 0) pl->a = w->D;
        const int later = k + 1 < w->L ? w->plan[k + 1].live : 0;
        pl->live = pl->a > later ? pl->a : later;
    }
    int T = o->threads > 0 ? o->threads : rf_get_threads();
    const int by_rows = o->max_batch / WS_MIN_ROWS;
    if (T > by_rows) T = by_rows;
    if (T < 1) T = 1;
    w->n_shards = T;
    w->cap = (o->max_batch + T - 1) / T;
    w->sh = calloc((size_t)T, sizeof *w->sh);
    int fail = !w->sh;
    for (int s = 0; s < T && !fail; s++) fail = shard_alloc(f, w, &w->sh[s], w->train && s > 0);
    if (!fail && T > 1) {
        w->pool = pool_create(T - 1);
        fail = !w->pool;
    }
    if (fail) {
        rf_flow_ws_free(w);
        rf_err_set(e, RF_ENOMEM, "out of memory allocating a workspace for batch %d", o->max_batch);
        return NULL;
    }
    return w;
}

int rf_flow_ws_set_latent_affine(rf_flow_ws *w, const rf_latent_affine *la, rf_err *e) {
    if (!la || !la->row) {
        memset(&w->la, 0, sizeof w->la);
        return RF_OK;
    }
    if (!w->train) return rf_err_set(e, RF_EARG, "workspace: a latent map needs a training workspace");
    if (!la->a || !la->b || !la->ld || la->G < 1 || la->G > w->D)
        return rf_err_set(e, RF_EARG, "workspace: incomplete latent map (G = %d)", la->G);
    for (int s = 0; s < w->n_shards; s++)
        if (!w->sh[s].za) {
            int fail = 0;
            w->sh[s].za = ws_take((size_t)w->cap * w->D, &w->bytes, &fail);
            if (fail) return rf_err_set(e, RF_ENOMEM, "out of memory for the adapted latents");
        }
    w->la = *la;
    return RF_OK;
}

rf_flow_ws *rf_flow_ws_create(const rf_flow *f, int max_batch, int memory_saving, rf_err *e) {
    rf_flow_ws_opts o = {.max_batch = max_batch, .memory_saving = memory_saving};
    return rf_flow_ws_create_opts(f, &o, e);
}

void rf_flow_ws_free(rf_flow_ws *w) {
    if (!w) return;
    pool_free(w->pool);
    if (w->sh)
        for (int s = 0; s < w->n_shards; s++) shard_free(w, &w->sh[s]);
    free(w->sh);
    free(w->plan);
    free(w);
}

size_t rf_flow_ws_bytes(const rf_flow_ws *w) { return w->bytes; }
size_t rf_flow_ws_grad_bytes(const rf_flow_ws *w) { return w->grad_bytes; }
int rf_flow_ws_threads(const rf_flow_ws *w) { return w->pool ? w->pool->n + 1 : 1; }

typedef struct run_task {
    void (*fn)(void *ctx, int k, int T);
    void *ctx;
    int T;
} run_task;

static void run_task_run(void *ctx, int k) {
    const run_task *t = ctx;
    t->fn(t->ctx, k, t->T);
}

void rf_flow_ws_run(rf_flow_ws *w, void (*fn)(void *ctx, int k, int T), void *ctx) {
    if (!w->pool) {
        fn(ctx, 0, 1);
        return;
    }
    run_task t = {fn, ctx, w->pool->n + 1};
    pool_run(w->pool, run_task_run, &t);
}

/* Shards for a batch of n rows: one per thread, at most one per WS_MIN_ROWS rows, one when BLAS
 * is threaded (or, for a gradient, when the workspace has no gradient buffers). */
static int active_shards(const rf_flow_ws *w, int n, int grad) {
    int S = w->pool ? w->pool->n + 1 : 1;
    if (S > 1 && (openblas_get_num_threads() > 1 || (grad && !w->train))) S = 1;
    const int by_rows = (n + WS_MIN_ROWS - 1) / WS_MIN_ROWS;
    if (S > by_rows) S = by_rows;
    return S < 1 ? 1 : S;
}

/* Rows [*lo, *hi) of shard s out of S for a batch of n. */
static void shard_rows(int n, int S, int s, int *lo, int *hi) {
    *lo = (int)((long)s * n / S);
    *hi = (int)((long)(s + 1) * n / S);
}

static float std_logdet(const rf_flow *f) {
    double t = 0;
    for (int j = 0; j < f->D; j++) t -= log(f->scale[j]);
    return (float)t;
}

/* dst[i, lo..hi) = src[i, lo..hi) for n rows of D floats (nothing when src == dst). */
static void copy_cols(int n, int D, int lo, int hi, const float *src, float *dst) {
    if (hi <= lo || src == dst) return;
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * D + lo, src + (size_t)i * D + lo, sizeof(float) * (size_t)(hi - lo));
}

/* Forward of n <= cap rows on shard sh: returns the buffer holding z; ld filled. With `keep`
 * (store mode, training) every activation and cache is kept. */
static float *forward_rows(const rf_flow *f, const rf_flow_ws *w, ws_shard *sh, int n,
                           const float *x, float *ld, int keep) {
    const int D = f->D;
    float *u = sh->acts[0];
    const float lds = std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++)
            u[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
        ld[i] = lds;
    }
    const int L = f->n_layers;
    float *cur = u, *zbuf = w->memory_saving ? sh->acts[L % 2] : sh->acts[L];
    for (int k = 0; k < L; k++) {
        const rf_layer *l = f->layers[k];
        const ws_layer *pl = &w->plan[k];
        float *next = w->memory_saving ? sh->acts[(k + 1) % 2] : sh->acts[k + 1];
        float *cache = keep && !w->memory_saving ? sh->caches[k] : NULL;
        copy_cols(n, D, pl->live, k > 0 ? w->plan[k - 1].live : D, cur, zbuf);
        pl->ops->forward(l, f->params + l->offset, n, cur, next, ld, cache, sh->scratch);
        copy_cols(n, D, pl->a, pl->live, cur, next);
        cur = next;
    }
    return cur; /* == zbuf */
}

/* Inverse of n <= cap rows: z (n x D, not modified unless it is x itself) -> x; ld = log|det
 * dz/dx| at x. x is written only after the last read of z, so z == x is allowed. */
static void inverse_rows(const rf_flow *f, const rf_flow_ws *w, ws_shard *sh, int n, const float *z,
                         float *x, float *ld) {
    const int D = f->D;
    const float *cur = z;
    memset(ld, 0, sizeof(float) * n);
    for (int k = f->n_layers - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        const ws_layer *pl = &w->plan[k];
        float *next = sh->acts[k % 2];
        pl->ops->inverse(l, f->params + l->offset, n, cur, next, ld, sh->scratch);
        copy_cols(n, D, pl->a, pl->live, cur, next);
        copy_cols(n, D, pl->live, k > 0 ? w->plan[k - 1].live : D, z, next);
        cur = next;
    }
    const float lds = std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++)
            x[(size_t)i * D + j] = cur[(size_t)i * D + j] * f->scale[j] + f->shift[j];
        ld[i] = -ld[i] + lds;
    }
}

/* log sum_c exp(a_c) */
static double logsumexp(const float *a, int C) {
    double m = a[0];
    for (int c = 1; c < C; c++)
        if (a[c] > m) m = a[c];
    if (!isfinite(m)) return m;
    double s = 0;
    for (int c = 0; c < C; c++) s += exp(a[c] - m);
    return m + log(s);
}

/* logp[i] from z (n rows): class-conditional with labels -> log p(z|y); without -> marginal
 * under a uniform class prior. */
static void base_logp(const rf_flow *f, ws_shard *sh, int n, const float *z, const int *labels,
                      float *logp) {
    const float *bp = f->params + f->base.offset;
    if (f->base.kind == RF_BASE_CLASS && !labels) {
        const int C = f->base.n_classes;
        rf_base_log_prob_classes(&f->base, bp, n, z, sh->lpc);
        for (int i = 0; i < n; i++) logp[i] = (float)(logsumexp(sh->lpc + (size_t)i * C, C) - log(C));
    } else {
        rf_base_log_prob(&f->base, bp, n, z, labels, logp);
    }
}

/* Runs body(f, w, sh, rows, offset) over the shards' rows (in chunks of at most cap rows), in
 * parallel when there is more than one shard. */
typedef struct rows_job {
    const rf_flow *f;
    rf_flow_ws *w;
    const float *in;
    float *out, *out2;
    const int *labels;
    const float *aux;
} rows_job;
typedef void (*rows_fn)(const rows_job *j, ws_shard *sh, int n, int off);

static void shard_run(const rows_job *j, ws_shard *sh, int lo, int hi, rows_fn fn) {
    for (int s = lo; s < hi; s += j->w->cap) fn(j, sh, hi - s < j->w->cap ? hi - s : j->w->cap, s);
}

typedef struct rows_task {
    const rows_job *j;
    rows_fn fn;
    int n, S;
} rows_task;

static void rows_task_run(void *ctx, int s) {
    const rows_task *t = ctx;
    if (s >= t->S) return;
    int lo, hi;
    shard_rows(t->n, t->S, s, &lo, &hi);
    shard_run(t->j, &t->j->w->sh[s], lo, hi, t->fn);
}

static void for_rows(const rows_job *j, int n, rows_fn fn) {
    if (n < 1) return;
    const int S = active_shards(j->w, n, 0);
    if (S == 1) {
        shard_run(j, &j->w->sh[0], 0, n, fn);
        return;
    }
    rows_task t = {j, fn, n, S};
    pool_run(j->w->pool, rows_task_run, &t);
}

static void job_forward(const rows_job *j, ws_shard *sh, int n, int off) {
    const int D = j->f->D;
    const float *z = forward_rows(j->f, j->w, sh, n, j->in + (size_t)off * D, sh->ld, 0);
    memcpy(j->out + (size_t)off * D, z, sizeof(float) * (size_t)n * D);
    if (j->out2) memcpy(j->out2 + off, sh->ld, sizeof(float) * n);
}

void rf_flow_forward(const rf_flow *f, rf_flow_ws *w, int n, const float *x, float *z,
                     float *logdet) {
    rows_job j = {.f = f, .w = w, .in = x, .out = z, .out2 = logdet};
    for_rows(&j, n, job_forward);
}

static void job_inverse(const rows_job *j, ws_shard *sh, int n, int off) {
    const int D = j->f->D;
    inverse_rows(j->f, j->w, sh, n, j->in + (size_t)off * D, j->out + (size_t)off * D, sh->ld);
    if (j->out2) memcpy(j->out2 + off, sh->ld, sizeof(float) * n);
}

void rf_flow_inverse(const rf_flow *f, rf_flow_ws *w, int n, const float *z, float *x,
                     float *logdet) {
    rows_job j = {.f = f, .w = w, .in = z, .out = x, .out2 = logdet};
    for_rows(&j, n, job_inverse);
}

static void job_log_prob(const rows_job *j, ws_shard *sh, int n, int off) {
    const float *z = forward_rows(j->f, j->w, sh, n, j->in + (size_t)off * j->f->D, sh->ld, 0);
    float *logp = j->out + off;
    base_logp(j->f, sh, n, z, j->labels ? j->labels + off : NULL, logp);
    for (int i = 0; i < n; i++) logp[i] += sh->ld[i];
}

void rf_flow_log_prob(const rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                      float *logp) {
    rows_job j = {.f = f, .w = w, .in = x, .out = logp, .labels = labels};
    for_rows(&j, n, job_log_prob);
}

static void job_posterior(const rows_job *j, ws_shard *sh, int n, int off) {
    const rf_flow *f = j->f;
    const int C = f->base.n_classes;
    const float *z = forward_rows(f, j->w, sh, n, j->in + (size_t)off * f->D, sh->ld, 0);
    float *o = j->out + (size_t)off * C;
    rf_base_log_prob_classes(&f->base, f->params + f->base.offset, n, z, o);
    for (int i = 0; i < n; i++) {
        float *r = o + (size_t)i * C;
        if (j->aux)
            for (int c = 0; c < C; c++) r[c] += j->aux[c];
        const float lse = (float)logsumexp(r, C);
        for (int c = 0; c < C; c++) r[c] -= lse;
    }
}

void rf_flow_class_log_posterior(const rf_flow *f, rf_flow_ws *w, int n, const float *x,
                                 const float *log_prior, float *out) {
    rows_job j = {.f = f, .w = w, .in = x, .out = out, .aux = log_prior};
    for_rows(&j, n, job_posterior);
}

static void job_sample(const rows_job *j, ws_shard *sh, int n, int off) {
    float *x = j->out + (size_t)off * j->f->D;
    inverse_rows(j->f, j->w, sh, n, x, x, sh->ld); /* x holds the base draws */
}

void rf_flow_sample(const rf_flow *f, rf_flow_ws *w, int n, const int *labels, rf_rng *rng, float *x) {
    if (n < 1) return;
    /* all base draws first, in row order (one stream whatever the sharding), into x */
    rf_base_sample(&f->base, f->params + f->base.offset, n, labels, rng, x);
    rows_job j = {.f = f, .w = w, .out = x};
    for_rows(&j, n, job_sample);
}

/* Loss at the base for n rows of one shard: fills sh->dz with dL/dz, accumulates the base's
 * parameter gradient into grads and returns the sum of the rows' losses (inv_n = 1 / batch). */
static double base_loss_grad(const rf_flow *f, ws_shard *sh, int n, const float *z, const int *labels,
                             float ce_weight, double inv_n, float *grads) {
    const float *bp = f->params + f->base.offset;
    float *gp = grads + f->base.offset;
    double loss = 0;
    if (f->base.kind == RF_BASE_CLASS) {
        const int C = f->base.n_classes;
        rf_base_log_prob_classes(&f->base, bp, n, z, sh->lpc);
        for (int i = 0; i < n; i++) {
            const float *a = sh->lpc + (size_t)i * C;
            float *g = sh->G + (size_t)i * C;
            const double lse = logsumexp(a, C);
            if (labels) {
                const int y = labels[i];
                loss += -(a[y] + sh->ld[i]);
                if (ce_weight > 0) loss += ce_weight * (lse - a[y]);
                for (int c = 0; c < C; c++) {
                    const double post = exp(a[c] - lse), hot = c == y;
                    g[c] = (float)(inv_n * (-hot + ce_weight * (post - hot)));
                }
            } else {
                loss += -(lse - log(C) + sh->ld[i]);
                for (int c = 0; c < C; c++) g[c] = (float)(-inv_n * exp(a[c] - lse));
            }
        }
        rf_base_backward_classes(&f->base, bp, n, z, sh->G, sh->dz, gp);
    } else {
        rf_base_log_prob(&f->base, bp, n, z, NULL, sh->logp);
        for (int i = 0; i < n; i++) {
            loss += -(sh->logp[i] + sh->ld[i]);
            sh->tmp_ld[i] = (float)-inv_n;
        }
        rf_base_backward(&f->base, bp, n, z, NULL, sh->tmp_ld, sh->dz, gp);
    }
    return loss;
}

/* Forward, loss and backward of n <= cap rows on one shard; gradients accumulate into grads. */
/* The per-row latent map of w->la for rows [r0, r0 + n) of the batch: za = a z + b, ld += its
 * log-determinant. */
static void latent_affine_forward(const rf_flow *f, const rf_latent_affine *la, int r0, int n, const float *z,
                                  float *za, float *ld) {
    const int D = f->D, G = la->G;
    const int *grp = f->base.group;
    for (int i = 0; i < n; i++) {
        const int r = la->row[r0 + i];
        const float *a = la->a + (size_t)r * G, *b = la->b + (size_t)r * G;
        const float *zi = z + (size_t)i * D;
        float *o = za + (size_t)i * D;
        for (int j = 0; j < D; j++) {
            const int g = grp ? grp[j] : j;
            o[j] = a[g] * zi[j] + b[g];
        }
        ld[i] += la->ld[r];
    }
}

/* dz = a * dza in place (the map's parameters are constants of the step). */
static void latent_affine_backward(const rf_flow *f, const rf_latent_affine *la, int r0, int n, float *dz) {
    const int D = f->D, G = la->G;
    const int *grp = f->base.group;
    for (int i = 0; i < n; i++) {
        const float *a = la->a + (size_t)la->row[r0 + i] * G;
        float *d = dz + (size_t)i * D;
        for (int j = 0; j < D; j++) d[j] *= a[grp ? grp[j] : j];
    }
}

static double rows_loss_grad(const rf_flow *f, const rf_flow_ws *w, ws_shard *sh, int r0, int n,
                             const float *x, const int *labels, float ce_weight, double inv_n,
                             float *grads) {
    float *z = forward_rows(f, w, sh, n, x, sh->ld, 1);
    const float *zb = z;
    if (w->la.row) {
        latent_affine_forward(f, &w->la, r0, n, z, sh->za, sh->ld);
        zb = sh->za;
    }
    const double loss = base_loss_grad(f, sh, n, zb, labels, ce_weight, inv_n, grads);
    if (w->la.row) latent_affine_backward(f, &w->la, r0, n, sh->dz);
    for (int i = 0; i < n; i++) sh->dld[i] = (float)-inv_n;
    const int D = f->D;
    float *dy = sh->dz, *dx = sh->dbuf;
    float *y = z;
    for (int k = f->n_layers - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        const ws_layer *pl = &w->plan[k];
        const int later = k + 1 < f->n_layers ? w->plan[k + 1].live : 0;
        const float *p = f->params + l->offset;
        const float *xin;
        const float *cache;
        if (w->memory_saving) {
            /* rebuild this layer's input from its output, then its cache: y lives in acts[0] or
             * acts[1]; the input goes to the other, the recomputed output (discarded) to acts[2].
             * That other buffer, acts[k % 2], is the one that held this layer's input in the
             * forward, and its floats [live_k, live_{k-1}) (frozen from layer k on) are still
             * there: every layer after k, forward or rebuilt, wrote below live_k. Of the input's
             * floats past the prefix only [a_k, live_k) are rebuilt, for the layers before. */
            float *xr = sh->acts[0] == y ? sh->acts[1] : sh->acts[0];
            float *yy = sh->acts[2];
            pl->ops->inverse(l, p, n, y, xr, sh->tmp_ld, sh->scratch);
            if (k > 0) copy_cols(n, D, pl->a, pl->live, y, xr);
            pl->ops->forward(l, p, n, xr, yy, sh->tmp_ld, sh->caches[0], sh->scratch);
            xin = xr;
            cache = sh->caches[0];
            y = xr;
        } else {
            xin = sh->acts[k];
            cache = sh->caches[k];
        }
        copy_cols(n, D, later, pl->live, sh->dz, dy); /* dL/dz of the floats frozen after layer k */
        pl->ops->backward(l, p, n, xin, dy, sh->dld, dx, grads + l->offset, cache, sh->scratch);
        if (k > 0) copy_cols(n, D, pl->a, pl->live, dy, dx);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return loss;
}

static double shard_loss_grad(const rf_flow *f, const rf_flow_ws *w, ws_shard *sh, int lo, int hi,
                              const float *x, const int *labels, float ce_weight, double inv_n,
                              float *grads) {
    double loss = 0;
    for (int s = lo; s < hi; s += w->cap) {
        const int m = hi - s < w->cap ? hi - s : w->cap;
        loss += rows_loss_grad(f, w, sh, s, m, x + (size_t)s * f->D, labels ? labels + s : NULL,
                               ce_weight, inv_n, grads);
    }
    return loss;
}

typedef struct grad_task {
    rf_flow *f;
    rf_flow_ws *w;
    int n, S;
    const float *x;
    const int *labels;
    float ce_weight;
    double inv_n;
    long n_blocks;
} grad_task;

static void grad_task_shard(void *ctx, int s) {
    const grad_task *t = ctx;
    if (s >= t->S) return;
    int lo, hi;
    shard_rows(t->n, t->S, s, &lo, &hi);
    ws_shard *sh = &t->w->sh[s];
    sh->loss = shard_loss_grad(t->f, t->w, sh, lo, hi, t->x, t->labels, t->ce_weight, t->inv_n,
                               s == 0 ? t->f->grads : sh->grads);
}

/* f->grads += shards 1..S-1, entry by entry in shard order; the shard buffers are left zero for
 * the next call. Thread k of T takes a contiguous range of blocks. */
static void grad_task_reduce(void *ctx, int k) {
    const grad_task *t = ctx;
    const int T = t->w->pool->n + 1;
    const long b0 = t->n_blocks * k / T, b1 = t->n_blocks * (k + 1) / T;
    const size_t np = t->f->n_params;
    float *g = t->f->grads;
    for (long b = b0; b < b1; b++) {
        const size_t i0 = (size_t)b * WS_RED_BLOCK, i1 = i0 + WS_RED_BLOCK < np ? i0 + WS_RED_BLOCK : np;
        for (int s = 1; s < t->S; s++) {
            float *h = t->w->sh[s].grads;
#pragma omp simd
            for (size_t i = i0; i < i1; i++) {
                g[i] += h[i];
                h[i] = 0.0f;
            }
        }
    }
}

double rf_flow_loss_grad(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                         float ce_weight) {
    if (n < 1) return NAN;
    const double inv_n = 1.0 / n;
    const int S = active_shards(w, n, 1);
    if (S == 1) return inv_n * shard_loss_grad(f, w, &w->sh[0], 0, n, x, labels, ce_weight, inv_n, f->grads);
    grad_task t = {f, w, n, S, x, labels, ce_weight, inv_n,
                   (long)((f->n_params + WS_RED_BLOCK - 1) / WS_RED_BLOCK)};
    pool_run(w->pool, grad_task_shard, &t);
    pool_run(w->pool, grad_task_reduce, &t);
    double loss = 0;
    for (int s = 0; s < S; s++) loss += w->sh[s].loss;
    return loss * inv_n;
}

int rf_flow_data_init(rf_flow *f, int n, const float *x, rf_err *e) {
    return rf_flow_data_init_labels(f, n, x, NULL, e);
}

int rf_flow_data_init_labels(rf_flow *f, int n, const float *x, const int *labels, rf_err *e) {
    rf_flow_ws_opts o = {.max_batch = n, .memory_saving = 1, .threads = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &o, e);
    if (!w) return e ? e->code : RF_ENOMEM;
    ws_shard *sh = &w->sh[0];
    const int D = f->D;
    float *cur = sh->acts[0];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            cur[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        float *p = f->params + l->offset, *next = sh->acts[(k + 1) % 2];
        if (l->ops->data_init) l->ops->data_init(l, p, n, cur);
        memset(sh->ld, 0, sizeof(float) * n);
        l->ops->forward(l, p, n, cur, next, sh->ld, NULL, sh->scratch);
        cur = next;
    }
    int rc = RF_OK;
    if (labels && f->base.kind == RF_BASE_CLASS) rc = rf_base_fit_moments(&f->base, f->params + f->base.offset, n, cur, labels, e);
    rf_flow_ws_free(w);
    return rc;
}
