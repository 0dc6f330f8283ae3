/* IIR filter design (Butterworth, notch) as second-order sections, frequency response, causal
 * and zero-phase (forward-backward) filtering.
 *
 * Butterworth design follows scipy.signal.butter step by step:
 *   1. analog low-pass prototype: poles p_m = -exp(i pi m / (2N)), m = -N+1, -N+3, ..., N-1,
 *      no zeros, gain 1 (|H(i w)|^2 = 1 / (1 + w^(2N)));
 *   2. prewarping: the digital cutoff f maps to the analog w = 2 fs tan(pi f / fs);
 *   3. frequency transformation of the zeros/poles/gain (lp2lp, lp2hp, lp2bp, lp2bs);
 *   4. bilinear transform z = (2 fs + s) / (2 fs - s); zeros at infinity go to z = -1;
 *   5. pairing into second-order sections: conjugate pole pairs (or two real poles) each get the
 *      nearest remaining zeros; sections are ordered with the poles nearest the unit circle last;
 *      the overall gain goes into the first section.
 * The notch is scipy.signal.iirnotch (Orfanidis): the bilinear transform of an analog notch with
 * the bandwidth prewarped so that the digital -3 dB points are exactly f0/Q apart. */
#include "renflow/dsp.h"

#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RF_PI 3.14159265358979323846
#define MAX_ORDER 10
#define MAX_ROOTS (2 * MAX_ORDER)

typedef double complex cplx;

const char *rf_filter_kind_name(rf_filter_kind k) {
    switch (k) {
    case RF_FILTER_LOWPASS: return "low-pass";
    case RF_FILTER_HIGHPASS: return "high-pass";
    case RF_FILTER_BANDPASS: return "band-pass";
    case RF_FILTER_BANDSTOP: return "band-stop";
    }
    return "unknown";
}

void rf_sos_free(rf_sos *s) {
    if (!s) return;
    rf_free(s->c);
    s->c = NULL;
    s->n = 0;
}

static int sos_alloc(rf_sos *s, int n, double fs, rf_err *e) {
    s->c = rf_zalloc(sizeof(double) * 6 * (size_t)(n > 0 ? n : 1), e);
    if (!s->c) return RF_ENOMEM;
    s->n = n;
    s->fs = fs;
    return RF_OK;
}

int rf_sos_append(rf_sos *dst, const rf_sos *src, rf_err *e) {
    if (!dst || !src || (src->n > 0 && !src->c) || src->n < 0 || dst->n < 0)
        return rf_err_set(e, RF_EARG, "rf_sos_append: NULL or invalid filter");
    if (dst->n > 0 && dst->fs != src->fs)
        return rf_err_set(e, RF_EARG,
                          "rf_sos_append: sampling rates differ (%g Hz and %g Hz)", dst->fs,
                          src->fs);
    if (src->n == 0) return RF_OK;
    double *c = realloc(dst->c, sizeof(double) * 6 * (size_t)(dst->n + src->n));
    if (!c) return rf_err_set(e, RF_ENOMEM, "rf_sos_append: out of memory");
    memcpy(c + 6 * (size_t)dst->n, src->c, sizeof(double) * 6 * (size_t)src->n);
    dst->c = c;
    if (dst->n == 0) dst->fs = src->fs;
    dst->n += src->n;
    return RF_OK;
}

/* ---------------- design ---------------- */

static int check_cutoff(const char *what, double f, double fs, rf_err *e) {
    if (!isfinite(f) || f <= 0 || f >= fs / 2)
        return rf_err_set(e, RF_EARG, "%s = %g Hz must be in (0, fs/2 = %g Hz) (fs = %g Hz)", what,
                          f, fs / 2, fs);
    return RF_OK;
}

/* Digital zeros, poles and gain of the Butterworth filter. */
static void butter_zpk(rf_filter_kind kind, int N, double f1, double f2, double fs, cplx *z,
                       int *nz, cplx *p, int *np, double *k) {
    cplx pa[MAX_ORDER];
    for (int i = 0; i < N; i++) {
        int m = -N + 1 + 2 * i;
        pa[i] = -cexp(I * RF_PI * m / (2.0 * N));
    }
    const double fs2 = 2 * fs;
    const double w1 = fs2 * tan(RF_PI * f1 / fs);
    const double w2 = (kind == RF_FILTER_BANDPASS || kind == RF_FILTER_BANDSTOP)
                          ? fs2 * tan(RF_PI * f2 / fs)
                          : 0;
    cplx prod_neg_pa = 1;
    for (int i = 0; i < N; i++) prod_neg_pa *= -pa[i];
    double gain = 1;
    *nz = 0;
    *np = 0;
    switch (kind) {
    case RF_FILTER_LOWPASS: /* s -> s / wo */
        for (int i = 0; i < N; i++) p[(*np)++] = pa[i] * w1;
        gain = pow(w1, N);
        break;
    case RF_FILTER_HIGHPASS: /* s -> wo / s: N zeros at the origin */
        for (int i = 0; i < N; i++) p[(*np)++] = w1 / pa[i];
        for (int i = 0; i < N; i++) z[(*nz)++] = 0;
        gain = creal(1.0 / prod_neg_pa);
        break;
    case RF_FILTER_BANDPASS: { /* s -> (s^2 + wo^2) / (s bw) */
        const double wo = sqrt(w1 * w2), bw = w2 - w1;
        for (int i = 0; i < N; i++) {
            cplx pl = pa[i] * bw / 2, r = csqrt(pl * pl - wo * wo);
            p[(*np)++] = pl + r;
            p[(*np)++] = pl - r;
        }
        for (int i = 0; i < N; i++) z[(*nz)++] = 0;
        gain = pow(bw, N);
        break;
    }
    case RF_FILTER_BANDSTOP: { /* s -> s bw / (s^2 + wo^2) */
        const double wo = sqrt(w1 * w2), bw = w2 - w1;
        for (int i = 0; i < N; i++) {
            cplx ph = (bw / 2) / pa[i], r = csqrt(ph * ph - wo * wo);
            p[(*np)++] = ph + r;
            p[(*np)++] = ph - r;
        }
        for (int i = 0; i < N; i++) {
            z[(*nz)++] = I * wo;
            z[(*nz)++] = -I * wo;
        }
        gain = creal(1.0 / prod_neg_pa);
        break;
    }
    }
    /* bilinear transform */
    cplx num = 1, den = 1;
    for (int i = 0; i < *nz; i++) {
        num *= fs2 - z[i];
        z[i] = (fs2 + z[i]) / (fs2 - z[i]);
    }
    for (int i = 0; i < *np; i++) {
        den *= fs2 - p[i];
        p[i] = (fs2 + p[i]) / (fs2 - p[i]);
    }
    while (*nz < *np) z[(*nz)++] = -1;
    *k = gain * creal(num / den);
}

/* One section under construction. */
typedef struct {
    int deg;     /* 1 or 2 */
    cplx p1, p2; /* poles (p2 = conj(p1) for a complex pair) */
    cplx z1, z2;
    double reach; /* max |pole|: closeness to the unit circle */
} section;

static int nearest(const cplx *v, const unsigned char *used, int n, cplx target, int want_real,
                   double tol) {
    int best = -1;
    double bd = INFINITY;
    for (int i = 0; i < n; i++) {
        if (used[i]) continue;
        int is_real = fabs(cimag(v[i])) <= tol;
        if (want_real == 1 && !is_real) continue;
        if (want_real == 0 && (is_real || cimag(v[i]) < 0)) continue; /* complex: rep only */
        double d = cabs(v[i] - target);
        if (d < bd) bd = d, best = i;
    }
    return best;
}

static int cmp_reach(const void *a, const void *b) {
    double x = ((const section *)a)->reach, y = ((const section *)b)->reach;
    return (x > y) - (x < y);
}

/* Pairs poles and zeros (np == nz) into sections; writes s->c. */
static int zpk_to_sos(const cplx *z, int nz, const cplx *p, int np, double k, double fs,
                      rf_sos *s, rf_err *e) {
    const double tol = 1e-9;
    section sec[MAX_ROOTS];
    int ns = 0;
    cplx realp[MAX_ROOTS];
    int nr = 0, npos = 0, nneg = 0;
    for (int i = 0; i < np; i++) {
        double im = cimag(p[i]);
        if (fabs(im) <= tol) realp[nr++] = creal(p[i]);
        else if (im > 0) {
            npos++;
            sec[ns++] = (section){2, p[i], conj(p[i]), 0, 0, cabs(p[i])};
        } else nneg++;
    }
    if (npos != nneg || nz != np)
        return rf_err_set(e, RF_ESTATE, "filter design: unpaired complex roots (%d/%d)", npos,
                          nneg);
    /* real poles: sort by |p| descending, pair neighbours */
    for (int i = 1; i < nr; i++)
        for (int j = i; j > 0 && cabs(realp[j]) > cabs(realp[j - 1]); j--) {
            cplx t = realp[j];
            realp[j] = realp[j - 1];
            realp[j - 1] = t;
        }
    for (int i = 0; i + 1 < nr; i += 2)
        sec[ns++] = (section){2, realp[i], realp[i + 1], 0, 0, cabs(realp[i])};
    int first_order = -1;
    if (nr % 2) {
        first_order = ns;
        sec[ns++] = (section){1, realp[nr - 1], 0, 0, 0, cabs(realp[nr - 1])};
    }
    /* zeros: the first-order section takes the nearest real zero first; then the sections with
     * the poles nearest the unit circle choose theirs */
    unsigned char used[MAX_ROOTS] = {0};
    if (first_order >= 0) {
        int j = nearest(z, used, nz, sec[first_order].p1, 1, tol);
        if (j < 0) return rf_err_set(e, RF_ESTATE, "filter design: no real zero for a real pole");
        used[j] = 1;
        sec[first_order].z1 = creal(z[j]);
    }
    int order[MAX_ROOTS];
    for (int i = 0; i < ns; i++) order[i] = i;
    for (int i = 1; i < ns; i++)
        for (int j = i; j > 0 && sec[order[j]].reach > sec[order[j - 1]].reach; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int oi = 0; oi < ns; oi++) {
        section *q = &sec[order[oi]];
        if (q->deg != 2) continue;
        cplx target = cabs(q->p1) >= cabs(q->p2) ? q->p1 : q->p2;
        int jc = nearest(z, used, nz, target, 0, tol), jr = nearest(z, used, nz, target, 1, tol);
        int take_complex = jc >= 0 && (jr < 0 || cabs(z[jc] - target) <= cabs(z[jr] - target));
        if (take_complex) {
            used[jc] = 1;
            /* mark its conjugate */
            int jj = -1;
            double bd = INFINITY;
            for (int i = 0; i < nz; i++)
                if (!used[i] && cimag(z[i]) < -tol && cabs(z[i] - conj(z[jc])) < bd)
                    bd = cabs(z[i] - conj(z[jc])), jj = i;
            if (jj < 0) return rf_err_set(e, RF_ESTATE, "filter design: unpaired complex zero");
            used[jj] = 1;
            q->z1 = z[jc];
            q->z2 = conj(z[jc]);
        } else {
            if (jr < 0) return rf_err_set(e, RF_ESTATE, "filter design: zeros exhausted");
            used[jr] = 1;
            int j2 = nearest(z, used, nz, target, 1, tol);
            if (j2 < 0) return rf_err_set(e, RF_ESTATE, "filter design: odd number of real zeros");
            used[j2] = 1;
            q->z1 = creal(z[jr]);
            q->z2 = creal(z[j2]);
        }
    }
    /* nearest to the unit circle last */
    qsort(sec, (size_t)ns, sizeof *sec, cmp_reach);
    int rc = sos_alloc(s, ns, fs, e);
    if (rc) return rc;
    for (int i = 0; i < ns; i++) {
        double *c = s->c + 6 * i;
        if (sec[i].deg == 2) {
            c[0] = 1;
            c[1] = -creal(sec[i].z1 + sec[i].z2);
            c[2] = creal(sec[i].z1 * sec[i].z2);
            c[3] = 1;
            c[4] = -creal(sec[i].p1 + sec[i].p2);
            c[5] = creal(sec[i].p1 * sec[i].p2);
        } else {
            c[0] = 1;
            c[1] = -creal(sec[i].z1);
            c[2] = 0;
            c[3] = 1;
            c[4] = -creal(sec[i].p1);
            c[5] = 0;
        }
    }
    for (int j = 0; j < 3; j++) s->c[j] *= k;
    return RF_OK;
}

int rf_butter(rf_filter_kind kind, int order, double f1, double f2, double fs, rf_sos *out,
              rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_butter: NULL output");
    memset(out, 0, sizeof *out);
    if ((int)kind < RF_FILTER_LOWPASS || (int)kind > RF_FILTER_BANDSTOP)
        return rf_err_set(e, RF_EARG, "rf_butter: unknown filter kind %d", (int)kind);
    const char *kn = rf_filter_kind_name(kind);
    if (!isfinite(fs) || fs <= 0)
        return rf_err_set(e, RF_EARG, "Butterworth %s: sampling rate fs = %g Hz must be > 0", kn,
                          fs);
    if (order < 1 || order > MAX_ORDER)
        return rf_err_set(e, RF_EARG, "Butterworth %s: order = %d must be in 1..%d", kn, order,
                          MAX_ORDER);
    char what[96];
    int band = kind == RF_FILTER_BANDPASS || kind == RF_FILTER_BANDSTOP;
    snprintf(what, sizeof what, "Butterworth %s: %s", kn, band ? "low cutoff f1" : "cutoff");
    if (check_cutoff(what, f1, fs, e)) return RF_EARG;
    if (band) {
        snprintf(what, sizeof what, "Butterworth %s: high cutoff f2", kn);
        if (check_cutoff(what, f2, fs, e)) return RF_EARG;
        if (!(f1 < f2))
            return rf_err_set(e, RF_EARG,
                              "Butterworth %s: low cutoff f1 = %g Hz must be below high cutoff "
                              "f2 = %g Hz",
                              kn, f1, f2);
    }
    cplx z[MAX_ROOTS], p[MAX_ROOTS];
    int nz, np;
    double k;
    butter_zpk(kind, order, f1, f2, fs, z, &nz, p, &np, &k);
    return zpk_to_sos(z, nz, p, np, k, fs, out, e);
}

int rf_notch(double f0, double Q, double fs, rf_sos *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_notch: NULL output");
    memset(out, 0, sizeof *out);
    if (!isfinite(fs) || fs <= 0)
        return rf_err_set(e, RF_EARG, "notch: sampling rate fs = %g Hz must be > 0", fs);
    if (check_cutoff("notch: centre frequency f0", f0, fs, e)) return RF_EARG;
    if (!isfinite(Q) || Q <= 0)
        return rf_err_set(e, RF_EARG, "notch at %g Hz: quality factor Q = %g must be > 0", f0, Q);
    const double bwf = f0 / Q;
    if (bwf >= fs / 2)
        return rf_err_set(e, RF_EARG,
                          "notch at %g Hz: bandwidth f0/Q = %g Hz (Q = %g) must be below fs/2 = "
                          "%g Hz",
                          f0, bwf, Q, fs / 2);
    const double w0 = 2 * RF_PI * f0 / fs, bw = 2 * RF_PI * bwf / fs;
    const double beta = tan(bw / 2), g = 1 / (1 + beta);
    int rc = sos_alloc(out, 1, fs, e);
    if (rc) return rc;
    double *c = out->c;
    c[0] = g;
    c[1] = -2 * g * cos(w0);
    c[2] = g;
    c[3] = 1;
    c[4] = -2 * g * cos(w0);
    c[5] = 2 * g - 1;
    return RF_OK;
}

int rf_eeg_filter_design(double fs, double highpass, double lowpass, int order, double notch,
                         double notch_q, rf_sos *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_eeg_filter_design: NULL output");
    memset(out, 0, sizeof *out);
    if (!isfinite(highpass) || highpass < 0)
        return rf_err_set(e, RF_EARG, "filter: highpass = %g Hz must be >= 0 (0 = off)",
                          highpass);
    if (!isfinite(lowpass) || lowpass < 0)
        return rf_err_set(e, RF_EARG, "filter: lowpass = %g Hz must be >= 0 (0 = off)", lowpass);
    if (!isfinite(notch) || notch < 0)
        return rf_err_set(e, RF_EARG, "filter: notch = %g Hz must be >= 0 (0 = off)", notch);
    if (highpass == 0 && lowpass == 0 && notch == 0)
        return rf_err_set(e, RF_EARG, "filter: highpass, lowpass and notch are all off");
    int rc = RF_OK;
    if (highpass > 0 && lowpass > 0)
        rc = rf_butter(RF_FILTER_BANDPASS, order, highpass, lowpass, fs, out, e);
    else if (highpass > 0)
        rc = rf_butter(RF_FILTER_HIGHPASS, order, highpass, 0, fs, out, e);
    else if (lowpass > 0)
        rc = rf_butter(RF_FILTER_LOWPASS, order, lowpass, 0, fs, out, e);
    if (rc) return rc;
    if (notch > 0) {
        rf_sos n;
        rc = rf_notch(notch, notch_q, fs, &n, e);
        if (!rc) rc = rf_sos_append(out, &n, e);
        rf_sos_free(&n);
        if (rc) {
            rf_sos_free(out);
            return rc;
        }
    }
    return RF_OK;
}

/* ---------------- response ---------------- */

int rf_filter_response(const rf_sos *s, const double *freqs, int nf, double *mag, double *phase,
                       rf_err *e) {
    if (!s || (s->n > 0 && !s->c) || s->n < 0 || nf < 0 || (nf > 0 && !freqs))
        return rf_err_set(e, RF_EARG, "rf_filter_response: NULL or invalid argument");
    for (int i = 0; i < nf; i++) {
        double f = freqs[i];
        if (!isfinite(f) || f < 0 || f > s->fs / 2)
            return rf_err_set(e, RF_EARG,
                              "rf_filter_response: frequency %d = %g Hz must be in [0, fs/2 = "
                              "%g Hz]",
                              i, f, s->fs / 2);
        const double w = 2 * RF_PI * f / s->fs;
        const cplx z1 = cexp(-I * w), z2 = z1 * z1;
        cplx h = 1;
        for (int j = 0; j < s->n; j++) {
            const double *c = s->c + 6 * j;
            h *= (c[0] + c[1] * z1 + c[2] * z2) / (c[3] + c[4] * z1 + c[5] * z2);
        }
        if (mag) mag[i] = cabs(h);
        if (phase) phase[i] = carg(h);
    }
    return RF_OK;
}

/* ---------------- filtering ---------------- */

void rf_sosfilt_zi(const rf_sos *s, double *zi) {
    double scale = 1;
    for (int j = 0; j < s->n; j++) {
        const double *c = s->c + 6 * j;
        const double b0 = c[0] / c[3], b1 = c[1] / c[3], b2 = c[2] / c[3];
        const double a1 = c[4] / c[3], a2 = c[5] / c[3];
        const double den = 1 + a1 + a2;
        const double g = den != 0 ? (b0 + b1 + b2) / den : 0;
        /* steady state of y = b0 x + z0, z0' = b1 x - a1 y + z1, z1' = b2 x - a2 y for x = 1 */
        zi[2 * j] = scale * (b1 + b2 - (a1 + a2) * g);
        zi[2 * j + 1] = scale * (b2 - a2 * g);
        scale *= g;
    }
}

void rf_sosfilt(const rf_sos *s, double *x, int64_t n, double *zi) {
    for (int j = 0; j < s->n; j++) {
        const double *c = s->c + 6 * j;
        const double b0 = c[0] / c[3], b1 = c[1] / c[3], b2 = c[2] / c[3];
        const double a1 = c[4] / c[3], a2 = c[5] / c[3];
        double z0 = zi ? zi[2 * j] : 0, z1 = zi ? zi[2 * j + 1] : 0;
        for (int64_t i = 0; i < n; i++) {
            const double xi = x[i], y = b0 * xi + z0;
            z0 = b1 * xi - a1 * y + z1;
            z1 = b2 * xi - a2 * y;
            x[i] = y;
        }
        if (zi) {
            zi[2 * j] = z0;
            zi[2 * j + 1] = z1;
        }
    }
}

int64_t rf_sosfiltfilt_padlen(const rf_sos *s) {
    int zb = 0, za = 0;
    double rmax = 0;
    for (int j = 0; j < s->n; j++) {
        const double *c = s->c + 6 * j;
        zb += c[2] == 0;
        za += c[5] == 0;
        /* roots of z^2 + a1 z + a2 */
        const double a1 = c[4] / c[3], a2 = c[5] / c[3];
        const cplx d = csqrt((cplx)(a1 * a1 - 4 * a2));
        const double r = fmax(cabs((-a1 + d) / 2), cabs((-a1 - d) / 2));
        if (r > rmax) rmax = r;
    }
    int64_t pad = 3 * (2 * (int64_t)s->n + 1 - (zb < za ? zb : za));
    if (rmax > 0) {
        /* 6 time constants of the slowest pole; unstable or marginal poles get a long pad */
        const double tau = rmax < 1 ? -1 / log(rmax) : 1e9;
        const double t3 = ceil(6 * fmin(tau, 1e9));
        if (t3 > (double)pad) pad = (int64_t)t3;
    }
    return pad;
}

static int check_sos(const rf_sos *s, const char *fn, rf_err *e) {
    if (!s || s->n < 0 || (s->n > 0 && !s->c))
        return rf_err_set(e, RF_EARG, "%s: NULL or invalid filter", fn);
    for (int j = 0; j < s->n; j++) {
        for (int k = 0; k < 6; k++)
            if (!isfinite(s->c[6 * j + k]))
                return rf_err_set(e, RF_ENONFINITE, "%s: filter section %d coefficient %d = %g",
                                  fn, j, k, s->c[6 * j + k]);
        if (s->c[6 * j + 3] == 0)
            return rf_err_set(e, RF_EARG, "%s: filter section %d has a0 = 0", fn, j);
    }
    return RF_OK;
}

/* Forward-backward filtering of x[0..n) using ext (n + 2 pad) and zi/st (2 * sections). */
static void filtfilt_one(const rf_sos *s, double *x, int64_t n, int64_t pad, int even,
                         double *ext, const double *zi, double *st) {
    const int64_t m = n + 2 * pad;
    for (int64_t i = 0; i < pad; i++) {
        /* ext[pad - j] mirrors x[j], ext[pad + n - 1 + j] mirrors x[n - 1 - j], j = 1..pad */
        const double l = x[pad - i], r = x[n - 2 - i];
        ext[i] = even ? l : 2 * x[0] - l;
        ext[pad + n + i] = even ? r : 2 * x[n - 1] - r;
    }
    memcpy(ext + pad, x, sizeof(double) * (size_t)n);
    for (int j = 0; j < 2 * s->n; j++) st[j] = zi[j] * ext[0];
    rf_sosfilt(s, ext, m, st);
    for (int64_t i = 0, k = m - 1; i < k; i++, k--) {
        double t = ext[i];
        ext[i] = ext[k];
        ext[k] = t;
    }
    for (int j = 0; j < 2 * s->n; j++) st[j] = zi[j] * ext[0];
    rf_sosfilt(s, ext, m, st);
    /* reversed: x[i] = ext[m - 1 - (pad + i)] */
    for (int64_t i = 0; i < n; i++) x[i] = ext[m - 1 - pad - i];
}

int rf_sosfiltfilt_rows(const rf_sos *s, double *x, int rows, int64_t n, int64_t padlen,
                        rf_padtype padtype, rf_err *e) {
    int rc = check_sos(s, "zero-phase filter", e);
    if (rc) return rc;
    if (rows < 0 || n < 1 || !x)
        return rf_err_set(e, RF_EARG,
                          "zero-phase filter: need at least one sample (rows = %d, n = %lld)",
                          rows, (long long)n);
    if ((int)padtype < RF_PAD_AUTO || (int)padtype > RF_PAD_EVEN)
        return rf_err_set(e, RF_EARG, "zero-phase filter: unknown pad type %d", (int)padtype);
    int64_t pad = padlen;
    if (pad < 0) {
        pad = rf_sosfiltfilt_padlen(s);
        if (pad > n - 1) pad = n - 1;
    } else if (pad >= n) {
        return rf_err_set(e, RF_EARG,
                          "zero-phase filter: signal of %lld samples is too short for padlen = "
                          "%lld (need more samples than padlen)",
                          (long long)n, (long long)pad);
    }
    for (int r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[(size_t)r * (size_t)n + (size_t)i]))
                return rf_err_set(e, RF_ENONFINITE,
                                  "zero-phase filter: non-finite value %g in row %d at sample %lld",
                                  x[(size_t)r * (size_t)n + (size_t)i], r, (long long)i);
    if (s->n == 0 || rows == 0) return RF_OK;
    int even = padtype == RF_PAD_EVEN;
    if (padtype == RF_PAD_AUTO) {
        double f0 = 0, h0;
        if (rf_filter_response(s, &f0, 1, &h0, NULL, e)) return e ? e->code : RF_EARG;
        even = h0 < 0.5;
    }
    double *zi = rf_zalloc(sizeof(double) * 2 * (size_t)s->n, e);
    if (!zi) return RF_ENOMEM;
    rf_sosfilt_zi(s, zi);
    int failed = 0;
    const size_t m = (size_t)(n + 2 * pad);
#pragma omp parallel if (rows > 1 && (double)rows * (double)n > 2e5)
    {
        double *ext = malloc(sizeof(double) * (m + 2 * (size_t)s->n));
        if (!ext) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int r = 0; r < rows; r++)
            if (ext) filtfilt_one(s, x + (size_t)r * (size_t)n, n, pad, even, ext, zi, ext + m);
        free(ext);
    }
    rf_free(zi);
    if (failed)
        return rf_err_set(e, RF_ENOMEM, "zero-phase filter: out of memory for %zu samples", m);
    return RF_OK;
}

int rf_sosfiltfilt(const rf_sos *s, double *x, int64_t n, int64_t padlen, rf_padtype padtype,
                   rf_err *e) {
    return rf_sosfiltfilt_rows(s, x, 1, n, padlen, padtype, e);
}
