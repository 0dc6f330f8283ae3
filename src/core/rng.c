/* xoshiro256** (Blackman & Vigna) seeded through splitmix64. */
#include "renflow/core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rf_rng_seed(rf_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->seed = seed;
}

uint64_t rf_rng_u64(rf_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rf_rng_uniform(rf_rng *r) { return (double)(rf_rng_u64(r) >> 11) * 0x1.0p-53; }

double rf_rng_normal(rf_rng *r) {
    for (;;) {
        double u = 2.0 * rf_rng_uniform(r) - 1.0;
        double v = 2.0 * rf_rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * log(s) / s);
    }
}

uint64_t rf_rng_below(rf_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t x = rf_rng_u64(r);
        if (x < limit) return x % n;
    }
}

void rf_rng_shuffle(rf_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rf_rng_below(r, (uint64_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void rf_rng_fork(rf_rng *parent, rf_rng *child) {
    uint64_t s = rf_rng_u64(parent);
    rf_rng_seed(child, s);
    child->seed = parent->seed;
}
