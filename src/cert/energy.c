/* Energy: measured through RAPL where the machine lets us read it, estimated otherwise.
 *   1. powercap (Linux intel_rapl driver, Intel and recent AMD): the package zones
 *      ROOT/intel-rapl:N/energy_uj (microjoules, cumulative, wrapping at max_energy_range_uj);
 *      sub-zones (intel-rapl:N:M: core, uncore, dram) are parts of a package and not added.
 *      Since Linux 5.10 energy_uj is readable by root only; a zone that exists but cannot be read
 *      is reported in the note.
 *   2. perf power events: the "power" PMU's energy-pkg event (type from ROOT/type, config from
 *      ROOT/events/energy-pkg, joules per count from ROOT/events/energy-pkg.scale), opened
 *      system-wide on CPU 0 with perf_event_open (needs perf_event_paranoid <= 0 or CAP_PERFMON).
 *   3. otherwise an estimate: process CPU time (all threads) x watts_per_core, "estimated".
 * Both measured methods count the whole package: other processes running at the same time are
 * included (the certificate records this). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cert_internal.h"

const char *rf_energy_method_name(rf_energy_method k) {
    switch (k) {
    case RF_ENERGY_RAPL: return "rapl-powercap";
    case RF_ENERGY_PERF: return "perf-power";
    case RF_ENERGY_ESTIMATED: return "estimated-cpu-time";
    }
    return "?";
}

/* 1 and *v on success; 0 (errno kept) when the file cannot be opened or parsed. */
static int read_double_file(const char *path, double *v) {
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    char buf[128];
    const int ok = fgets(buf, sizeof buf, fp) != NULL;
    const int err = errno;
    fclose(fp);
    if (!ok) {
        errno = err ? err : EIO;
        return 0;
    }
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (end == buf || errno) {
        errno = EINVAL;
        return 0;
    }
    return 1;
}

static int is_package_zone(const char *name) {
    int a, used = 0;
    return sscanf(name, "intel-rapl:%d%n", &a, &used) == 1 && name[used] == '\0';
}

static int cmp_str(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* Fills the meter's zones; 1 when at least one package zone is readable. */
static int rapl_open(rf_energy_meter *m, const char *root) {
    DIR *d = opendir(root);
    if (!d) {
        snprintf(m->note, sizeof m->note, "no RAPL powercap zones: %.300s: %.60s", root, strerror(errno));
        return 0;
    }
    struct dirent *de;
    int found = 0, unreadable = 0, err = 0;
    m->n_zones = 0;
    while ((de = readdir(d)) && m->n_zones < 8) {
        if (!is_package_zone(de->d_name)) continue;
        found++;
        char p[1024];
        double v, r = 0;
        snprintf(p, sizeof p, "%s/%s/energy_uj", root, de->d_name);
        if (!read_double_file(p, &v)) {
            unreadable++;
            err = errno;
            continue;
        }
        snprintf(p, sizeof p, "%s/%s/max_energy_range_uj", root, de->d_name);
        if (!read_double_file(p, &r)) r = 0;
        snprintf(m->zones[m->n_zones], sizeof m->zones[0], "%.63s", de->d_name);
        m->max_range_uj[m->n_zones] = r;
        m->n_zones++;
    }
    closedir(d);
    if (m->n_zones > 1) {
        /* a fixed order (directory order is not); ranges follow their zone */
        char z[8][64];
        double r[8];
        memcpy(z, m->zones, sizeof z);
        memcpy(r, m->max_range_uj, sizeof r);
        qsort(m->zones, (size_t)m->n_zones, sizeof m->zones[0], cmp_str);
        for (int i = 0; i < m->n_zones; i++)
            for (int j = 0; j < m->n_zones; j++)
                if (!strcmp(m->zones[i], z[j])) m->max_range_uj[i] = r[j];
    }
    if (m->n_zones > 0) return 1;
    if (!found) snprintf(m->note, sizeof m->note, "no RAPL package zones (intel-rapl:N) under %.300s", root);
    else
        snprintf(m->note, sizeof m->note, "%d RAPL package zone(s) under %.300s, but energy_uj is not readable: %.60s", found, root,
                 strerror(err));
    return 0;
}

static int rapl_sample(const rf_energy_meter *m, double *uj) {
    for (int i = 0; i < m->n_zones; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s/energy_uj", m->root, m->zones[i]);
        if (!read_double_file(p, &uj[i])) return 0;
    }
    return 1;
}

static long perf_open(struct perf_event_attr *a) {
    return syscall(SYS_perf_event_open, a, -1 /* all processes */, 0 /* CPU 0 */, -1, 0);
}

static int perf_start(rf_energy_meter *m, const char *root, char *why, size_t nwhy) {
    double type, scale = 0;
    char p[1024];
    snprintf(p, sizeof p, "%s/type", root);
    if (!read_double_file(p, &type)) {
        snprintf(why, nwhy, "no perf power PMU: %.150s: %.60s", p, strerror(errno));
        return 0;
    }
    snprintf(p, sizeof p, "%s/events/energy-pkg", root);
    FILE *fp = fopen(p, "r");
    unsigned long long cfg = 0;
    int ok = fp && fscanf(fp, "event=%llx", &cfg) == 1;
    if (fp) fclose(fp);
    if (!ok) {
        snprintf(why, nwhy, "perf power PMU without a readable energy-pkg event (%.150s)", p);
        return 0;
    }
    snprintf(p, sizeof p, "%s/events/energy-pkg.scale", root);
    if (!read_double_file(p, &scale) || !(scale > 0)) {
        snprintf(why, nwhy, "perf energy-pkg event without a scale (%.150s)", p);
        return 0;
    }
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = (unsigned)type;
    a.size = sizeof a;
    a.config = cfg;
    long fd = perf_open(&a);
    if (fd < 0) {
        snprintf(why, nwhy, "perf_event_open(power/energy-pkg) failed: %s", strerror(errno));
        return 0;
    }
    uint64_t c;
    if (read((int)fd, &c, sizeof c) != (ssize_t)sizeof c) {
        snprintf(why, nwhy, "reading the perf energy-pkg counter failed");
        close((int)fd);
        return 0;
    }
    m->perf_fd = (int)fd;
    m->perf_scale = scale;
    m->perf_start = c;
    snprintf(m->root, sizeof m->root, "%s", root);
    return 1;
}

void rf_energy_begin(rf_energy_meter *m, const char *rapl_root, const char *perf_root, double watts_per_core) {
    memset(m, 0, sizeof *m);
    m->perf_fd = -1;
    m->watts_per_core = watts_per_core > 0 ? watts_per_core : RF_CERT_DEFAULT_WATTS_PER_CORE;
    const char *rr = rapl_root ? rapl_root : getenv("RF_RAPL_ROOT");
    if (!rr || !*rr) rr = "/sys/class/powercap";
    const char *pr = perf_root ? perf_root : getenv("RF_PERF_POWER_ROOT");
    if (!pr || !*pr) pr = "/sys/bus/event_source/devices/power";
    snprintf(m->root, sizeof m->root, "%s", rr);
    char why_perf[256] = "";
    if (rapl_open(m, rr) && rapl_sample(m, m->start_uj)) {
        m->method = RF_ENERGY_RAPL;
    } else if (perf_start(m, pr, why_perf, sizeof why_perf)) {
        m->method = RF_ENERGY_PERF;
    } else {
        m->method = RF_ENERGY_ESTIMATED;
        snprintf(m->root, sizeof m->root, "%s", "");
        const size_t k = strlen(m->note);
        snprintf(m->note + k, sizeof m->note - k, "; %s", why_perf);
    }
    m->wall0 = rf_now();
    m->cpu0 = rf_cpu_seconds();
}

int rf_energy_read(rf_energy_meter *m, rf_energy_reading *r, rf_err *e) {
    memset(r, 0, sizeof *r);
    r->wall_s = rf_now() - m->wall0;
    r->cpu_s = rf_cpu_seconds() - m->cpu0;
    r->estimated_joules = r->cpu_s * m->watts_per_core;
    switch (m->method) {
    case RF_ENERGY_RAPL: {
        double now[8], j = 0;
        if (!rapl_sample(m, now)) return rf_err_set(e, RF_EIO, "RAPL zone %s/%s: energy_uj became unreadable", m->root, m->zones[0]);
        for (int i = 0; i < m->n_zones; i++) {
            double d = now[i] - m->start_uj[i];
            if (d < 0) d += m->max_range_uj[i] > 0 ? m->max_range_uj[i] : 0; /* the counter wrapped */
            j += d * 1e-6;
        }
        r->joules = j;
        break;
    }
    case RF_ENERGY_PERF: {
        uint64_t c;
        if (read(m->perf_fd, &c, sizeof c) != (ssize_t)sizeof c)
            return rf_err_set(e, RF_EIO, "reading the perf energy-pkg counter failed");
        r->joules = (double)(c - m->perf_start) * m->perf_scale;
        break;
    }
    case RF_ENERGY_ESTIMATED: r->joules = r->estimated_joules; break;
    }
    return RF_OK;
}

void rf_energy_end(rf_energy_meter *m) {
    if (m->perf_fd >= 0) close(m->perf_fd);
    m->perf_fd = -1;
}

cJSON *rf_energy_method_json(const rf_energy_meter *m) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "method", rf_energy_method_name(m->method));
    cJSON_AddBoolToObject(j, "measured", m->method != RF_ENERGY_ESTIMATED);
    char src[1024];
    switch (m->method) {
    case RF_ENERGY_RAPL: {
        int k = snprintf(src, sizeof src, "powercap energy_uj of the package zone(s)");
        for (int i = 0; i < m->n_zones && k < (int)sizeof src - 80; i++)
            k += snprintf(src + k, sizeof src - (size_t)k, " %s/%s", m->root, m->zones[i]);
        cJSON_AddStringToObject(j, "source", src);
        cJSON_AddStringToObject(j, "scope", "whole CPU package(s): other processes running meanwhile are included");
        break;
    }
    case RF_ENERGY_PERF:
        snprintf(src, sizeof src, "perf_event_open %s/events/energy-pkg on CPU 0 (scale %g J per count)", m->root, m->perf_scale);
        cJSON_AddStringToObject(j, "source", src);
        cJSON_AddStringToObject(j, "scope", "the CPU package of CPU 0: other processes running meanwhile are included");
        break;
    case RF_ENERGY_ESTIMATED:
        snprintf(src, sizeof src,
                 "estimated: process CPU time (all threads, CLOCK_PROCESS_CPUTIME_ID) x %g W per core%s", m->watts_per_core,
                 m->watts_per_core == RF_CERT_DEFAULT_WATTS_PER_CORE
                     ? " (default figure: about TDP / cores of current x86 CPUs, e.g. 85 W / 8 cores; override with --watts-per-core)"
                     : " (figure given with --watts-per-core)");
        cJSON_AddStringToObject(j, "source", src);
        cJSON_AddStringToObject(j, "scope", "this process's CPU time only; idle, memory and other components not included");
        break;
    }
    cJSON_AddNumberToObject(j, "watts_per_core", m->watts_per_core);
    cJSON_AddStringToObject(j, "note", m->note[0] == ';' ? m->note + 2 : m->note);
    return j;
}

/* ================================================================ energy per example */
typedef struct energy_work {
    const cert_subject *s;
    const rf_matrix *x;
    double *out;
    float *smp;
    int n;
    rf_rng *rng;
    int sample;
} energy_work;

static int energy_run(const energy_work *w, const rf_cert_opts *o, rf_energy_meter *m, double *per,
                      rf_energy_reading *rd, long *count, rf_err *e) {
    int rc = RF_OK;
    long n = 0;
    rf_energy_begin(m, o->rapl_root, o->perf_root, o->watts_per_core);
    const double t0 = rf_now();
    do {
        rc = w->sample ? w->s->sample(w->s->ctx, w->n, w->rng, w->smp, e) : w->s->logp(w->s->ctx, w->x, NULL, w->out, e);
        n += w->n;
    } while (!rc && rf_now() - t0 < o->energy_budget_s);
    if (!rc) rc = rf_energy_read(m, rd, e);
    rf_energy_end(m);
    *count = n;
    *per = n > 0 ? rd->joules / n : NAN;
    return rc;
}

static cJSON *energy_metric(const rf_energy_meter *m, const rf_energy_reading *r, double per, long n, int B,
                            const char *what) {
    char how[700];
    snprintf(how, sizeof how,
             "%s energy of repeated %s on batches of %d rows for at least the energy budget, divided by the "
             "%ld rows processed (%s)",
             m->method == RF_ENERGY_ESTIMATED ? "estimated" : "measured", what, B, n,
             m->method == RF_ENERGY_ESTIMATED ? "CPU seconds x watts per core" : rf_energy_method_name(m->method));
    cJSON *j = cert_metric(per, "J per example", "lower", how);
    cJSON_AddStringToObject(j, "energy_method", rf_energy_method_name(m->method));
    cJSON_AddBoolToObject(j, "estimated", m->method == RF_ENERGY_ESTIMATED);
    cert_add_num(j, "joules", r->joules);
    cJSON_AddNumberToObject(j, "rows", (double)n);
    cert_add_num(j, "wall_s", r->wall_s);
    cert_add_num(j, "cpu_s", r->cpu_s);
    cert_add_num(j, "average_power_w", r->wall_s > 0 ? r->joules / r->wall_s : NAN);
    cert_add_num(j, "estimated_j_per_example", n > 0 ? r->estimated_joules / n : NAN);
    return j;
}

int cert_measure_energy(const cert_subject *s, const rf_matrix *test, const rf_cert_opts *o, rf_rng *rng,
                        cJSON *metrics, cJSON **method, rf_err *e) {
    const int B = o->batch > 0 ? o->batch : 256;
    rf_matrix batch = {0};
    double *out = malloc(sizeof(double) * (size_t)B);
    float *smp = rf_floats((size_t)B * s->D, e);
    int rc = !out || !smp ? rf_err_set(e, RF_ENOMEM, "out of memory") : cert_rows(test, B, &batch, e);
    rf_energy_meter m;
    rf_energy_reading r;
    double per;
    long n;
    energy_work w = {.s = s, .x = &batch, .out = out, .smp = smp, .n = B, .rng = rng, .sample = 0};
    if (!rc) rc = energy_run(&w, o, &m, &per, &r, &n, e);
    if (!rc) {
        cJSON_AddItemToObject(metrics, "energy_log_density", energy_metric(&m, &r, per, n, B, "log-density evaluation"));
        if (method) *method = rf_energy_method_json(&m);
        w.sample = 1;
        rc = energy_run(&w, o, &m, &per, &r, &n, e);
    }
    if (!rc) cJSON_AddItemToObject(metrics, "energy_sample", energy_metric(&m, &r, per, n, B, "sampling"));
    rf_matrix_free(&batch);
    free(out);
    rf_free(smp);
    return rc;
}
