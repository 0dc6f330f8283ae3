/* `mpirun -np N renflow search ...`: rank 0 runs the search (sampler, study file, report), ranks
 * 1..N-1 evaluate trials (include/renflow/dist.h). Open MPI ends the whole job when a rank dies,
 * unless mpirun runs with --enable-recovery: then a dead worker's trial is queued again and the
 * search finishes on the other workers:
 *
 *     mpirun --enable-recovery -np 4 renflow search --trials 100 --study s.db
 *
 * (as root add --allow-run-as-root; on one machine with more ranks than cores --oversubscribe).
 * A worker silent for RENFLOW_MPI_TIMEOUT seconds (default 30; keepalives every
 * min(1, timeout / 10) s) is dead as well; one on rank 0's host whose process is gone is dead at
 * once. Every host must see the same data files (and the same relative paths: mpirun starts
 * every rank in the launch directory); the models are sent to rank 0, which writes OUT/. Without
 * --enable-recovery a dead rank still loses nothing: run the same command again and the study
 * resumes, running the dead workers' trials again. */
#ifndef RF_CLI_SEARCH_MPI_H
#define RF_CLI_SEARCH_MPI_H

#include "renflow.h"
#include "renflow/dist.h"

/* Call first in rf_cli_search. Outside an MPI job of several processes: returns 0 and does
 * nothing. In one, MPI starts; a worker rank then serves trials until rank 0 ends the run and
 * this returns 1 with *exit_code (the caller returns it); rank 0 returns 0 and goes on (MPI ends
 * at exit, after the workers were told to stop). Built without MPI, every rank returns 1 with
 * exit code 1 (rank 0 says why). */
int rf_cli_search_mpi_enter(int *argc, char ***argv, int *exit_code);
/* Processes of the MPI run this process coordinates (1: none, or a worker). */
int rf_cli_search_mpi_ranks(void);
/* Rank 0, in place of rf_study_optimize(st, s, rf_search_objective, job, o, res, e): the trials
 * run on the worker ranks, each loading the task from src (the same data and split as rank 0's,
 * checked by fingerprint); models come back to rank 0 and are kept in job->out_dir. */
int rf_cli_search_mpi_optimize(rf_study *st, rf_sampler *s, const rf_search_job *job, const rf_dist_task_src *src,
                               const rf_optimize_opts *o, rf_optimize_result *res, rf_err *e);

#endif
