/* Rational resampling (up/down) with a polyphase Kaiser-windowed-sinc low-pass filter, the design
 * of scipy.signal.resample_poly: cutoff at the lower Nyquist rate (1 / max(up, down) of the
 * upsampled Nyquist), 2 * half_len * max(up, down) + 1 taps, Kaiser(beta) window. Two
 * differences: every polyphase branch is normalised to unit DC gain (constants come out exact)
 * and the input is extended by odd reflection instead of zeros (no droop at the edges).
 *
 * Output sample m is y[m] = sum_i x[i] h[half + m down - i up] (x extended beyond [0, n)), i.e.
 * the sample at input time m * down / up; only the taps of one phase are touched per output. */
#include "renflow/dsp.h"

#include <gsl/gsl_sf_bessel.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RF_PI 3.14159265358979323846

struct rf_resampler {
    int up, down;
    int64_t half;  /* filter half-length in taps */
    int64_t ntaps; /* 2 half + 1 */
    int64_t lmax;  /* taps per phase (padded with zeros) */
    double *hp;    /* up x lmax: hp[phi * lmax + j] = h[phi + j up] / (sum of phase phi) */
    double fs_in, fs_out;
};

void rf_resample_opts_default(rf_resample_opts *o) {
    o->max_factor = 1024;
    o->tol = 1e-6;
    o->downsample_only = 0;
    o->half_len = 10;
    o->kaiser_beta = 5.0;
}

static long long gcd_ll(long long a, long long b) {
    while (b) {
        long long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int is_integer_rate(double f) {
    return fabs(f - nearbyint(f)) <= 1e-9 * fmax(1.0, fabs(f));
}

static int check_opts(const rf_resample_opts *o, rf_err *e) {
    if (o->max_factor < 1 || o->max_factor > 1000000)
        return rf_err_set(e, RF_EARG, "resample: max_factor = %d must be in 1..1000000",
                          o->max_factor);
    if (!isfinite(o->tol) || o->tol <= 0 || o->tol > 0.01)
        return rf_err_set(e, RF_EARG, "resample: tol = %g must be in (0, 0.01]", o->tol);
    if (o->half_len < 1 || o->half_len > 64)
        return rf_err_set(e, RF_EARG, "resample: half_len = %d must be in 1..64", o->half_len);
    if (!isfinite(o->kaiser_beta) || o->kaiser_beta < 0 || o->kaiser_beta > 50)
        return rf_err_set(e, RF_EARG, "resample: kaiser_beta = %g must be in [0, 50]",
                          o->kaiser_beta);
    return RF_OK;
}

int rf_resample_factors(double fs_in, double fs_out, const rf_resample_opts *opts, int *up,
                        int *down, rf_err *e) {
    rf_resample_opts o;
    if (opts) o = *opts;
    else rf_resample_opts_default(&o);
    int rc = check_opts(&o, e);
    if (rc) return rc;
    if (!up || !down) return rf_err_set(e, RF_EARG, "rf_resample_factors: NULL output");
    if (!isfinite(fs_in) || fs_in <= 0 || !isfinite(fs_out) || fs_out <= 0)
        return rf_err_set(e, RF_EARG,
                          "cannot resample from %g Hz to %g Hz: rates must be finite and > 0",
                          fs_in, fs_out);
    if (o.downsample_only && fs_out > fs_in)
        return rf_err_set(e, RF_EARG,
                          "cannot resample from %g Hz to %g Hz: the target rate is higher and "
                          "only downsampling was requested",
                          fs_in, fs_out);
    long long p = 0, q = 0;
    if (is_integer_rate(fs_in) && is_integer_rate(fs_out) && fs_in < 9e15 && fs_out < 9e15) {
        long long a = llround(fs_in), b = llround(fs_out), g = gcd_ll(a, b);
        p = b / g;
        q = a / g;
        if (p > o.max_factor || q > o.max_factor)
            return rf_err_set(e, RF_EARG,
                              "cannot resample from %g Hz to %g Hz: factor up/down = %lld/%lld "
                              "exceeds max_factor = %d",
                              fs_in, fs_out, p, q, o.max_factor);
    } else {
        const double r = fs_out / fs_in;
        for (long long d = 1; d <= o.max_factor && !p; d++) {
            double pn = nearbyint(r * (double)d);
            if (pn >= 1 && pn <= o.max_factor && fabs(pn / (double)d - r) <= o.tol * r) {
                p = (long long)pn;
                q = d;
            }
        }
        if (!p)
            return rf_err_set(e, RF_EARG,
                              "cannot resample from %g Hz to %g Hz: the ratio %.10g is not up/down "
                              "with up, down <= %d within relative tolerance %g",
                              fs_in, fs_out, r, o.max_factor, o.tol);
    }
    *up = (int)p;
    *down = (int)q;
    return RF_OK;
}

int64_t rf_resample_len(int64_t n, int up, int down) {
    if (n <= 0 || up <= 0 || down <= 0) return 0;
    return (n * up + down - 1) / down;
}

void rf_resampler_free(rf_resampler *r) {
    if (!r) return;
    rf_free(r->hp);
    rf_free(r);
}

void rf_resampler_factors(const rf_resampler *r, int *up, int *down) {
    if (up) *up = r->up;
    if (down) *down = r->down;
}

int rf_resampler_taps(const rf_resampler *r) { return (int)r->ntaps; }

/* ratio I0(a) / I0(b) without overflow */
static double i0_ratio(double a, double b) {
    return exp(a - b) * gsl_sf_bessel_I0_scaled(a) / gsl_sf_bessel_I0_scaled(b);
}

rf_resampler *rf_resampler_create(double fs_in, double fs_out, const rf_resample_opts *opts,
                                  rf_err *e) {
    rf_resample_opts o;
    if (opts) o = *opts;
    else rf_resample_opts_default(&o);
    int up, down;
    if (rf_resample_factors(fs_in, fs_out, &o, &up, &down, e)) return NULL;
    rf_resampler *r = rf_zalloc(sizeof *r, e);
    if (!r) return NULL;
    r->up = up;
    r->down = down;
    r->fs_in = fs_in;
    r->fs_out = fs_out;
    const int64_t mx = up > down ? up : down;
    if (up == 1 && down == 1) { /* identity */
        r->half = 0;
        r->ntaps = 1;
        r->lmax = 1;
        r->hp = rf_zalloc(sizeof(double), e);
        if (!r->hp) {
            rf_free(r);
            return NULL;
        }
        r->hp[0] = 1;
        return r;
    }
    r->half = (int64_t)o.half_len * mx;
    r->ntaps = 2 * r->half + 1;
    r->lmax = (r->ntaps + up - 1) / up;
    r->hp = rf_zalloc(sizeof(double) * (size_t)(r->lmax * up), e);
    double *sum = rf_zalloc(sizeof(double) * (size_t)up, e);
    if (!r->hp || !sum) {
        rf_free(sum);
        rf_resampler_free(r);
        return NULL;
    }
    const double fc = 1.0 / (double)mx, beta = o.kaiser_beta;
    for (int64_t k = 0; k < r->ntaps; k++) {
        const double t = (double)(k - r->half);
        const double x = fc * t;
        const double sinc = x == 0 ? 1 : sin(RF_PI * x) / (RF_PI * x);
        const double u = t / (double)r->half;
        const double w = i0_ratio(beta * sqrt(fmax(0, 1 - u * u)), beta);
        const double h = fc * sinc * w;
        const int64_t phi = k % up, j = k / up;
        r->hp[phi * r->lmax + j] = h;
        sum[phi] += h;
    }
    for (int phi = 0; phi < up; phi++) {
        if (!(fabs(sum[phi]) > 1e-300)) {
            rf_err_set(e, RF_ESTATE,
                       "resample %g Hz -> %g Hz: polyphase branch %d has zero DC gain", fs_in,
                       fs_out, phi);
            rf_free(sum);
            rf_resampler_free(r);
            return NULL;
        }
        for (int64_t j = 0; j < r->lmax; j++) r->hp[phi * r->lmax + j] /= sum[phi];
    }
    rf_free(sum);
    return r;
}

int rf_resampler_run(const rf_resampler *r, const double *x, int64_t n, double *y, rf_err *e) {
    if (!r || !x || !y || n < 1)
        return rf_err_set(e, RF_EARG, "resample: NULL input or no samples (n = %lld)",
                          (long long)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return rf_err_set(e, RF_ENONFINITE, "resample %g Hz -> %g Hz: non-finite value %g at "
                                                "sample %lld",
                              r->fs_in, r->fs_out, x[i], (long long)i);
    const int up = r->up, down = r->down;
    const int64_t ny = rf_resample_len(n, up, down);
    if (up == 1 && down == 1) {
        memcpy(y, x, sizeof(double) * (size_t)n);
        return RF_OK;
    }
    /* odd-reflection extension with a margin of lmax + 2 samples at each end */
    const int64_t M = r->lmax + 2;
    double *xe = malloc(sizeof(double) * (size_t)(n + 2 * M));
    if (!xe)
        return rf_err_set(e, RF_ENOMEM, "resample: out of memory for %lld samples",
                          (long long)(n + 2 * M));
    for (int64_t i = -M; i < n + M; i++) {
        double v;
        if (i < 0) v = 2 * x[0] - x[-i < n ? -i : n - 1];
        else if (i >= n) {
            int64_t k = 2 * (n - 1) - i;
            v = 2 * x[n - 1] - x[k >= 0 ? k : 0];
        } else v = x[i];
        xe[i + M] = v;
    }
    const int64_t L = r->lmax;
    for (int64_t m = 0; m < ny; m++) {
        const int64_t base = m * down + r->half;
        const int64_t ihi = base / up, phi = base % up;
        const double *h = r->hp + phi * L;
        const double *xp = xe + M + ihi; /* xp[-j] = x[ihi - j] */
        double acc = 0;
        for (int64_t j = 0; j < L; j++) acc += h[j] * xp[-j];
        y[m] = acc;
    }
    free(xe);
    return RF_OK;
}

int rf_resample_rows(const double *x, int rows, int64_t n, double fs_in, double fs_out,
                     const rf_resample_opts *o, double **y, int64_t *ny, rf_err *e) {
    if (!y || !ny) return rf_err_set(e, RF_EARG, "rf_resample_rows: NULL output");
    *y = NULL;
    *ny = 0;
    if (!x || rows < 1 || n < 1)
        return rf_err_set(e, RF_EARG, "resample: need rows >= 1 and samples >= 1 (rows = %d, n = "
                                      "%lld)",
                          rows, (long long)n);
    rf_resampler *r = rf_resampler_create(fs_in, fs_out, o, e);
    if (!r) return e ? e->code : RF_EARG;
    const int64_t m = rf_resample_len(n, r->up, r->down);
    double *out = malloc(sizeof(double) * (size_t)m * (size_t)rows);
    if (!out) {
        rf_resampler_free(r);
        return rf_err_set(e, RF_ENOMEM, "resample: out of memory for %d x %lld samples", rows,
                          (long long)m);
    }
    int rc = RF_OK;
    int bad_row = -1;
    rf_err re;
    rf_err_clear(&re);
#pragma omp parallel for schedule(dynamic) if (rows > 1 && (double)rows * (double)n > 2e5)
    for (int i = 0; i < rows; i++) {
        rf_err le;
        int lrc = rf_resampler_run(r, x + (size_t)i * (size_t)n, n, out + (size_t)i * (size_t)m,
                                   &le);
        if (lrc) {
#pragma omp critical(rf_resample_rows_err)
            if (bad_row < 0 || i < bad_row) {
                bad_row = i;
                rc = lrc;
                re = le;
            }
        }
    }
    rf_resampler_free(r);
    if (rc) {
        free(out);
        return rf_err_set(e, rc, "row %d: %s", bad_row, re.msg);
    }
    *y = out;
    *ny = m;
    return RF_OK;
}
