/* Clocks, resource usage and thread control. */
#include "renflow/core.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double rf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double rf_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long rf_peak_rss_kb(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(fp);
    return kb;
}

/* renflow parallelises over the rows of a batch itself (one shard of rows per OpenMP thread,
 * src/flow/flow_ws.c), which at the sizes flows train at is much faster than threading every
 * small GEMM. So OpenBLAS is set to one thread: each shard calls it single-threaded, and no
 * OpenBLAS worker threads compete with the OpenMP threads for the cores (with OpenMP's default
 * spin-waiting that competition cost up to 3x). Nested parallel regions stay inactive. */
void rf_set_threads(int n) {
    if (n <= 0) return;
    openblas_set_num_threads(1);
    omp_set_num_threads(n);
    omp_set_max_active_levels(1);
}

int rf_get_threads(void) { return omp_get_max_threads(); }
