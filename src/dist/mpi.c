/* The MPI transport: MPI_COMM_WORLD, rank 0 the coordinator. Nothing here ever waits on a peer
 * that may be dead: sends are MPI_Isend of a private copy (completed in the background, dropped
 * when the peer is forgotten), receives poll MPI_Improbe + MPI_Imrecv with short sleeps, and
 * errors return (MPI_ERRORS_RETURN) instead of aborting the job. A keepalive thread sends a
 * keepalive every `interval` seconds (rank 0 to each worker, workers to rank 0) and drains the
 * incoming ones, so silence() tells how long a peer has been quiet even while this process's
 * main thread is busy training; a worker that hears nothing from rank 0 for orphan_timeout
 * seconds exits (rank 0 is gone, e.g. under mpirun --enable-recovery). All MPI calls are made
 * under one mutex (MPI_THREAD_SERIALIZED suffices). */
#include "renflow/dist.h"

#ifndef RF_HAVE_MPI

int rf_dist_have_mpi(void) { return 0; }

void rf_dist_mpi_skip_finalize(rf_dist_transport *tp) { (void)tp; }

rf_dist_transport *rf_dist_mpi_start(int *argc, char ***argv, double interval, double orphan_timeout, rf_err *e) {
    (void)argc;
    (void)argv;
    (void)interval;
    (void)orphan_timeout;
    rf_err_set(e, RF_EARG, "this renflow was built without MPI (install libopenmpi-dev and rebuild: CMake finds it)");
    return NULL;
}

#else

#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct pending {
    MPI_Request req;
    void *buf;
    int peer;
    struct pending *next;
} pending;

typedef struct mpi_impl {
    pthread_mutex_t mu;   /* every MPI call; the fields below */
    pthread_mutex_t qmu;  /* quit flag + condition for the keepalive thread */
    pthread_cond_t qcv;
    pthread_t ka;
    int ka_started, quit;
    double interval, orphan_timeout;
    double *last_heard;   /* per peer, rf_now() */
    unsigned char *gone;  /* per peer: forgotten */
    pending *sends;
    int we_initialised;
    int skip_finalize;    /* a peer died: MPI_Finalize may hang (see dist.h) */
} mpi_impl;

int rf_dist_have_mpi(void) { return 1; }

static void mpi_msg(int code, char *buf, size_t n) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) len = 0;
    s[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING - 1] = '\0';
    snprintf(buf, n, "%s", len ? s : "unknown MPI error");
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Completes what it can of the queued sends. Under mu. */
static void progress_sends(mpi_impl *m) {
    pending **pp = &m->sends;
    while (*pp) {
        pending *p = *pp;
        int done = 0;
        if (MPI_Test(&p->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1; /* failed: nothing more to wait for */
        if (done) {
            *pp = p->next;
            free(p->buf);
            free(p);
        } else {
            pp = &p->next;
        }
    }
}

/* Queues buf (owned from here on) for peer. Under mu. */
static int post_send(mpi_impl *m, int peer, int tag, void *buf, size_t len, char *err, size_t errn) {
    pending *p = malloc(sizeof *p);
    if (!p) {
        free(buf);
        snprintf(err, errn, "out of memory");
        return RF_ENOMEM;
    }
    int rc = MPI_Isend(buf, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &p->req);
    if (rc != MPI_SUCCESS) {
        mpi_msg(rc, err, errn);
        free(buf);
        free(p);
        return RF_EIO;
    }
    p->buf = buf;
    p->peer = peer;
    p->next = m->sends;
    m->sends = p;
    return RF_OK;
}

static void *keepalive_main(void *arg) {
    rf_dist_transport *tp = arg;
    mpi_impl *m = tp->impl;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        progress_sends(m);
        char err[256];
        if (tp->rank == 0) {
            for (int w = 1; w < tp->size; w++)
                if (!m->gone[w]) post_send(m, w, RF_DIST_KEEPALIVE, NULL, 0, err, sizeof err);
        } else if (!m->gone[0]) {
            post_send(m, 0, RF_DIST_KEEPALIVE, NULL, 0, err, sizeof err);
        }
        for (;;) { /* drain the keepalives */
            int flag = 0;
            MPI_Message msg;
            MPI_Status st;
            if (MPI_Improbe(MPI_ANY_SOURCE, RF_DIST_KEEPALIVE, MPI_COMM_WORLD, &flag, &msg, &st) != MPI_SUCCESS || !flag) break;
            char dummy;
            MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
            if (st.MPI_SOURCE >= 0 && st.MPI_SOURCE < tp->size) m->last_heard[st.MPI_SOURCE] = rf_now();
        }
        const double quiet0 = rf_now() - m->last_heard[0];
        pthread_mutex_unlock(&m->mu);
        if (tp->rank != 0 && quiet0 > m->orphan_timeout) {
            fprintf(stderr, "renflow: MPI rank %d: nothing heard from rank 0 for %.0f s: it is gone; this worker stops\n",
                    tp->rank, quiet0);
            fflush(stderr);
            _exit(1);
        }
        pthread_mutex_lock(&m->qmu);
        if (!m->quit) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            double t = (double)until.tv_nsec * 1e-9 + m->interval;
            until.tv_sec += (time_t)t;
            until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
            pthread_cond_timedwait(&m->qcv, &m->qmu, &until);
        }
        int quit = m->quit;
        pthread_mutex_unlock(&m->qmu);
        if (quit) break;
    }
    return NULL;
}

static int t_send(rf_dist_transport *tp, int peer, int tag, const void *buf, size_t len, rf_err *e) {
    mpi_impl *m = tp->impl;
    if (peer < 0 || peer >= tp->size || peer == tp->rank)
        return rf_err_set(e, RF_EARG, "MPI: no peer rank %d (size %d)", peer, tp->size);
    if (len > RF_DIST_MAX_MESSAGE) return rf_err_set(e, RF_EARG, "MPI: a message of %zu bytes is too large", len);
    void *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) return rf_err_set(e, RF_ENOMEM, "out of memory (message of %zu bytes)", len);
        memcpy(copy, buf, len);
    }
    char err[256] = "";
    pthread_mutex_lock(&m->mu);
    int rc = m->gone[peer] ? RF_EIO : RF_OK;
    if (rc) {
        free(copy);
        snprintf(err, sizeof err, "the peer was declared dead");
    } else {
        progress_sends(m);
        rc = post_send(m, peer, tag, copy, len, err, sizeof err);
    }
    pthread_mutex_unlock(&m->mu);
    return rc ? rf_err_set(e, rc, "MPI: sending to rank %d: %s", peer, err) : RF_OK;
}

static int t_recv(rf_dist_transport *tp, int from, double timeout, int *peer, int *tag, unsigned char **buf, size_t *len,
                  rf_err *e) {
    mpi_impl *m = tp->impl;
    *peer = -1;
    *tag = 0;
    *buf = NULL;
    *len = 0;
    const double deadline = rf_now() + (timeout > 0 ? timeout : 0);
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        pthread_mutex_lock(&m->mu);
        progress_sends(m);
        int rc = MPI_Improbe(from < 0 ? MPI_ANY_SOURCE : from, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &msg, &st);
        int count = 0;
        MPI_Request req = MPI_REQUEST_NULL;
        unsigned char *b = NULL;
        if (rc == MPI_SUCCESS && flag) {
            rc = MPI_Get_count(&st, MPI_BYTE, &count);
            if (rc == MPI_SUCCESS && count >= 0) {
                b = malloc(count > 0 ? (size_t)count : 1);
                if (b) rc = MPI_Imrecv(b, count, MPI_BYTE, &msg, &req);
            }
        }
        pthread_mutex_unlock(&m->mu);
        if (rc != MPI_SUCCESS) {
            char s[256];
            mpi_msg(rc, s, sizeof s);
            free(b);
            return rf_err_set(e, RF_EIO, "MPI: receiving: %s", s);
        }
        if (flag && !b) return rf_err_set(e, RF_ENOMEM, "out of memory (message of %d bytes)", count);
        if (flag) {
            const int src = st.MPI_SOURCE;
            /* the message is matched: wait for its bytes while the sender is still heard from */
            int cut = 0;
            for (;;) {
                int done = 0;
                pthread_mutex_lock(&m->mu);
                rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
                const double quiet = rf_now() - m->last_heard[src];
                if (rc == MPI_SUCCESS && !done && quiet > m->orphan_timeout) {
                    /* the sender died mid-message: the message is dropped (its buffer may still
                     * be written: kept); the sender's silence tells the caller it is dead */
                    MPI_Cancel(&req);
                    MPI_Request_free(&req);
                    pthread_mutex_unlock(&m->mu);
                    cut = 1;
                    break;
                }
                if (rc == MPI_SUCCESS && done) m->last_heard[src] = rf_now();
                pthread_mutex_unlock(&m->mu);
                if (rc != MPI_SUCCESS) {
                    char s[256];
                    mpi_msg(rc, s, sizeof s);
                    return rf_err_set(e, RF_EIO, "MPI: receiving from rank %d: %s", src, s); /* b is MPI's now: kept */
                }
                if (done) break;
                sleep_s(2e-4);
            }
            if (cut) continue;
            if (st.MPI_TAG == RF_DIST_KEEPALIVE) {
                free(b);
                continue;
            }
            *peer = src;
            *tag = st.MPI_TAG;
            if (count > 0) {
                *buf = b;
                *len = (size_t)count;
            } else {
                free(b);
            }
            return RF_OK;
        }
        const double now = rf_now();
        if (now >= deadline) return RF_OK;
        double left = deadline - now;
        sleep_s(left < 1e-3 ? left : 1e-3);
    }
}

static double t_silence(rf_dist_transport *tp, int peer) {
    mpi_impl *m = tp->impl;
    if (peer < 0 || peer >= tp->size) return 0;
    pthread_mutex_lock(&m->mu);
    double q = rf_now() - m->last_heard[peer];
    pthread_mutex_unlock(&m->mu);
    return q;
}

static void t_forget(rf_dist_transport *tp, int peer) {
    mpi_impl *m = tp->impl;
    if (peer < 0 || peer >= tp->size) return;
    pthread_mutex_lock(&m->mu);
    m->gone[peer] = 1;
    m->skip_finalize = 1;
    pending **pp = &m->sends;
    while (*pp) {
        pending *p = *pp;
        if (p->peer == peer) {
            /* a send to a dead peer may never complete; MPI may still read its buffer: kept */
            MPI_Request_free(&p->req);
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static void t_destroy(rf_dist_transport *tp) {
    if (!tp) return;
    mpi_impl *m = tp->impl;
    if (m) {
        if (m->ka_started) {
            pthread_mutex_lock(&m->qmu);
            m->quit = 1;
            pthread_cond_signal(&m->qcv);
            pthread_mutex_unlock(&m->qmu);
            pthread_join(m->ka, NULL);
        }
        /* let the last messages (STOP, a last result) leave, while their peers are heard from */
        const double until = rf_now() + (m->orphan_timeout < 10 ? m->orphan_timeout : 10);
        for (;;) {
            pthread_mutex_lock(&m->mu);
            progress_sends(m);
            int left = m->sends != NULL;
            pthread_mutex_unlock(&m->mu);
            if (!left || rf_now() > until) break;
            sleep_s(1e-3);
        }
        for (pending *p = m->sends, *nx; p; p = nx) { /* never completed: given up (buffers kept) */
            nx = p->next;
            MPI_Request_free(&p->req);
            free(p);
        }
        free(m->last_heard);
        free(m->gone);
        pthread_mutex_destroy(&m->mu);
        pthread_mutex_destroy(&m->qmu);
        pthread_cond_destroy(&m->qcv);
        int fin = 0;
        if (m->we_initialised && !m->skip_finalize && MPI_Finalized(&fin) == MPI_SUCCESS && !fin) MPI_Finalize();
        free(m);
    }
    free(tp);
}

void rf_dist_mpi_skip_finalize(rf_dist_transport *tp) {
    if (!tp || !tp->ops || strcmp(tp->ops->name, "mpi") != 0) return;
    mpi_impl *m = tp->impl;
    pthread_mutex_lock(&m->mu);
    m->skip_finalize = 1;
    pthread_mutex_unlock(&m->mu);
}

static const rf_dist_transport_ops MPI_OPS = {"mpi", t_send, t_recv, t_silence, t_forget, t_destroy};

rf_dist_transport *rf_dist_mpi_start(int *argc, char ***argv, double interval, double orphan_timeout, rf_err *e) {
    if (!(interval > 0) || !(orphan_timeout > interval)) {
        rf_err_set(e, RF_EARG, "MPI: keepalive interval %g s and timeout %g s: need 0 < interval < timeout", interval,
                   orphan_timeout);
        return NULL;
    }
    int inited = 0, provided = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
            char s[256];
            mpi_msg(rc, s, sizeof s);
            rf_err_set(e, RF_EIO, "MPI: MPI_Init_thread failed: %s", s);
            return NULL;
        }
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_SERIALIZED) {
        rf_err_set(e, RF_EIO, "MPI: the library gives thread level %d; renflow needs MPI_THREAD_SERIALIZED (%d)", provided,
                   MPI_THREAD_SERIALIZED);
        if (!inited) MPI_Finalize();
        return NULL;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    rf_dist_transport *tp = calloc(1, sizeof *tp);
    mpi_impl *m = calloc(1, sizeof *m);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (m) {
        m->last_heard = calloc((size_t)size, sizeof *m->last_heard);
        m->gone = calloc((size_t)size, 1);
    }
    if (!tp || !m || !m->last_heard || !m->gone) {
        if (m) {
            free(m->last_heard);
            free(m->gone);
        }
        free(m);
        free(tp);
        if (!inited) MPI_Finalize();
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    tp->ops = &MPI_OPS;
    tp->impl = m;
    tp->rank = rank;
    tp->size = size;
    m->interval = interval;
    m->orphan_timeout = orphan_timeout;
    m->we_initialised = !inited;
    const double now = rf_now();
    for (int i = 0; i < size; i++) m->last_heard[i] = now;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->qmu, NULL);
    pthread_cond_init(&m->qcv, NULL);
    if (size > 1) {
        if (pthread_create(&m->ka, NULL, keepalive_main, tp) != 0) {
            rf_err_set(e, RF_EIO, "MPI: cannot start the keepalive thread");
            t_destroy(tp);
            return NULL;
        }
        m->ka_started = 1;
    }
    return tp;
}

#endif
