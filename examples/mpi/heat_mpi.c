/*
 * heat_mpi solves the 2-D heat equation of examples/c/heat.c on several MPI ranks and
 * checkpoints with ckp: each rank owns a strip of rows and its own checkpoint file
 * (CKPT.rankR), and all ranks call ckpSaveAll at the same steps. Killed at any moment
 * (every rank with kill -9, as when a node dies) and started again with the same
 * arguments, the ranks agree on a version to restart from and finish with exactly the
 * answer of an uninterrupted run, which is also the answer of the serial program.
 *
 *     mpicc -I capi examples/mpi/heat_mpi.c -L . -lckp -Wl,-rpath,$PWD -o heat_mpi
 *     mpirun -n 4 ./heat_mpi -ckpt /tmp/heat.ckp -n 256 -steps 5000 -every 100
 *     mpirun -n 4 ./heat_mpi -ckpt /tmp/heat.ckp -n 256 -steps 5000 -every 100 -remote /shared/heat
 *
 * There are two ways to agree on where to restart. Without -remote the ranks talk
 * (MPI_Allreduce over ckpNewest, below). With -remote LOCATION (a directory every
 * rank can reach, or s3://bucket/prefix with endpoint= and the keys in the
 * environment) each rank also copies its versions to that store in the background,
 * as rank R of a job of N ranks, and a restart needs no communication at all:
 * ckpRestoreJob, on every rank, restores the job version (the newest version every
 * rank committed in the store) and rewinds to it, so that version numbers mean the
 * same step on every rank from there on; with no job version yet, it starts the job
 * over. This holds because no rank saves a version before every rank has restored:
 * every step exchanges ghost rows and reduces the residual, which no rank passes
 * before all of them are computing. A rank whose node (and local file) is gone
 * restarts from the store alone. At the end every rank calls ckpFlush, and rank 0
 * reports the job version ckpJobVersion reads from the store.
 *
 * Each start of the program is a launch of the job with an id of its own (launch=):
 * rank 0 draws 8 random bytes and broadcasts them (MPI_Bcast), so that a rank of an
 * earlier launch still running (a process the launcher failed to kill) can never
 * mix its saves into this launch's: it gets ERESTART instead. Under a scheduler, its
 * ids do as well: $SLURM_JOB_ID.$SLURM_RESTART_COUNT.
 *
 * Agreeing on a restart with MPI. A kill can land in the middle of a round of ckpSaveAll: some
 * ranks hold the round's version, others do not. The ranks take the newest version
 * every rank holds: MPI_Allreduce(MPI_MIN) over ckpNewest. They restore it and check,
 * with a second MPI_Allreduce, that every rank restored the same step (and that every
 * restore succeeded); if not, they try the version before, down to a fresh start.
 * Then they realign version numbers: a rank that saved a round the others lost holds
 * one more version than they do, and its next saves would carry higher numbers than
 * theirs for the same steps. So, when the ranks' newest versions differ, every rank
 * saves the restored state until its newest version is one past the highest among
 * them: from there on, a version number means the same step on every rank.
 *
 * Each step ends with an MPI_Allreduce of the largest change (the residual), which
 * keeps the ranks within one step of each other, so they differ by one round of saves
 * at most, and keep= can stay small.
 *
 * For the test: -pids DIR makes each rank write its process id to DIR/rankR.pid (the
 * test kills the ranks with them), and -progress FILE makes rank 0 append its
 * "resumed" and "checkpoint" lines to FILE too, as they happen (mpirun forwards standard output
 * late when the ranks keep the cores busy), and every rank R append where it started
 * ("resumed at step S (version V)" or "started") to FILE.rankR.
 */
#include <inttypes.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ckp_util.h"

/* progress is a rank's position: saved with its strip in the same ckpSaveAll. */
struct progress {
	int64_t step;
	int64_t n;
	int64_t ranks;
	double alpha;
};

static int rank, ranks;

static void check(int st, const char *what) {
	if (st != 0) {
		fprintf(stderr, "heat_mpi rank %d: %s: %s (%s)\n", rank, what, ckpLastError(), ckpStrerror(st));
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
}

static void usage(void) {
	if (rank == 0) {
		fprintf(stderr, "usage: heat_mpi [-ckpt FILE] [-n N] [-steps S] [-every E] [-out FILE] [-remote LOCATION] [-pids DIR] [-progress FILE]\n");
	}
	MPI_Abort(MPI_COMM_WORLD, 2);
}

/* launch_id returns the id of this launch of the job, the same on every rank: 8
 * random bytes of rank 0's (the clock and its process id if /dev/urandom is missing). */
static uint64_t launch_id(void) {
	uint64_t id = 0;
	if (rank == 0) {
		FILE *u = fopen("/dev/urandom", "rb");
		if (u == NULL || fread(&id, sizeof id, 1, u) != 1) {
			id = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
		}
		if (u != NULL) fclose(u);
	}
	MPI_Bcast(&id, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	return id;
}

/* fnv1a is the FNV-1a hash of n bytes, as in examples/c/heat.c. */
static uint64_t fnv1a(const void *p, size_t n) {
	const unsigned char *b = p;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++) {
		h = (h ^ b[i]) * 1099511628211ULL;
	}
	return h;
}

int main(int argc, char **argv) {
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &ranks);

	const char *path = "heat.ckp", *out = NULL, *pids = NULL, *progress = NULL, *remote = NULL;
	int n = 128;
	int64_t steps = 2000, every = 50;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) usage();
		const char *a = argv[i], *v = argv[++i];
		if (strcmp(a, "-ckpt") == 0) path = v;
		else if (strcmp(a, "-out") == 0) out = v;
		else if (strcmp(a, "-pids") == 0) pids = v;
		else if (strcmp(a, "-progress") == 0) progress = v;
		else if (strcmp(a, "-remote") == 0) remote = v;
		else if (strcmp(a, "-n") == 0) n = atoi(v);
		else if (strcmp(a, "-steps") == 0) steps = atoll(v);
		else if (strcmp(a, "-every") == 0) every = atoll(v);
		else usage();
	}
	if (n < ranks + 2 || steps < 0 || every < 2) {
		if (rank == 0) fprintf(stderr, "heat_mpi: need -n >= ranks+2, -steps >= 0, -every >= 2\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	if (pids != NULL) {
		char pf[4096];
		snprintf(pf, sizeof pf, "%s/rank%d.pid", pids, rank);
		FILE *p = fopen(pf, "w");
		if (p == NULL || fprintf(p, "%ld\n", (long)getpid()) < 0 || fclose(p) != 0) {
			perror(pf);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
	}

	/* This rank's rows: [lo, hi) of the n x n grid, with a ghost row on each side. */
	int lo = (int)((int64_t)n * rank / ranks), hi = (int)((int64_t)n * (rank + 1) / ranks), rows = hi - lo;
	size_t rowbytes = (size_t)n * sizeof(double);
	double *cur = calloc((size_t)(rows + 2) * n, sizeof(double));
	double *nxt = calloc((size_t)(rows + 2) * n, sizeof(double));
	double *strip = cur + n; /* the rows this rank owns: the registered region */
	struct progress p = {0, n, ranks, 0.2};

	/* Each rank its own file. workers=1: the ranks share the node's cores. */
	char file[4096], options[8192];
	snprintf(file, sizeof file, "%s.rank%d", path, rank);
	if (remote != NULL) {
		/* max_pending= four saves: a save waits while four wait for their upload, so
		 * the store is never more than about four saves behind (what a restart loses). */
		size_t save = (size_t)rows * rowbytes + sizeof p;
		snprintf(options, sizeof options,
		         "keep=8 workers=1 remote=%s rank=%d ranks=%d max_pending=%zu launch=%016" PRIx64, remote, rank,
		         ranks, 4 * save, launch_id());
	} else {
		snprintf(options, sizeof options, "keep=8 workers=1");
	}
	CheckpointFile f;
	Checkpoint cstrip, cprog;
	check(ckpOpen(file, options, &f), "open");
	check(ckpRegister(f, "strip", strip, (size_t)rows * rowbytes, &cstrip), "register strip");
	check(ckpRegister(f, "progress", &p, sizeof p, &cprog), "register progress");

	int v, highest = 0;
	if (remote != NULL) {
		/* Agree through the store: every rank restores the job version, or starts over. */
		check(ckpRestoreJob(f, &v), "restore the job version");
		if (v > 0 && (p.n != n || p.ranks != ranks)) {
			fprintf(stderr, "heat_mpi rank %d: version %d is of another grid or job\n", rank, v);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
	} else {
		/* Agree on the newest version every rank holds, and check that it is one state. */
		int newest;
		check(ckpNewest(cprog, &newest), "newest");
		MPI_Allreduce(&newest, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
		MPI_Allreduce(&newest, &highest, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
		for (; v > 0; v--) {
			int ok = ckpRestoreAll(f, v) == 0 && p.n == n && p.ranks == ranks;
			/* min of ok, min of step, min of -step: all ok and one step if min == -(-max). */
			int64_t mine[3] = {ok, ok ? p.step : -1, ok ? -p.step : 1}, all[3];
			MPI_Allreduce(mine, all, 3, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
			if (all[0] == 1 && all[1] == -all[2]) {
				break;
			}
		}
	}
	if (v == 0) { /* a fresh start (a failed restore may have written p) */
		p = (struct progress){0, n, ranks, 0.2};
		for (int i = lo; i < hi; i++) {
			for (int j = 0; j < n; j++) {
				double x = 0;
				if (j == 0) x = 50;
				else if (i > n / 3 && i < 2 * n / 3 && j > n / 3 && j < 2 * n / 3) x = 100;
				strip[(size_t)(i - lo) * n + j] = x;
			}
		}
	}
	/* Realign version numbers (see the top of the file; ckpRestoreJob did it with -remote). */
	if (remote == NULL && highest != v) {
		int mine;
		check(ckpNewest(cprog, &mine), "newest");
		for (; mine < highest + 1; mine++) {
			check(ckpSaveAll(f), "save (realign)");
		}
	}
	if (progress != NULL) {
		char pf[4096];
		snprintf(pf, sizeof pf, "%s.rank%d", progress, rank);
		FILE *rp = fopen(pf, "a");
		if (rp == NULL) {
			perror(pf);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		if (v > 0) {
			fprintf(rp, "resumed at step %" PRId64 " (version %d)\n", p.step, v);
		} else {
			fprintf(rp, "started\n");
		}
		if (fclose(rp) != 0) {
			perror(pf);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
	}
	FILE *prog = NULL;
	if (progress != NULL && rank == 0 && (prog = fopen(progress, "a")) == NULL) {
		perror(progress);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	if (v > 0 && rank == 0) {
		printf("resumed at step %" PRId64 " (version %d)\n", p.step, v);
		fflush(stdout);
		if (prog != NULL) {
			fprintf(prog, "resumed at step %" PRId64 " (version %d)\n", p.step, v);
			fflush(prog);
		}
	}

	int up = rank > 0 ? rank - 1 : MPI_PROC_NULL, down = rank < ranks - 1 ? rank + 1 : MPI_PROC_NULL;
	while (p.step < steps) {
		/* Ghost rows from the neighbours. */
		MPI_Sendrecv(cur + n, n, MPI_DOUBLE, up, 0, cur + (size_t)(rows + 1) * n, n, MPI_DOUBLE, down, 0,
		             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		MPI_Sendrecv(cur + (size_t)rows * n, n, MPI_DOUBLE, down, 1, cur, n, MPI_DOUBLE, up, 1, MPI_COMM_WORLD,
		             MPI_STATUS_IGNORE);
		double change = 0;
		memcpy(nxt + n, cur + n, (size_t)rows * rowbytes);
		for (int i = lo; i < hi; i++) {
			if (i == 0 || i == n - 1) continue; /* the plate's edges stay fixed */
			for (int j = 1; j < n - 1; j++) {
				size_t k = (size_t)(i - lo + 1) * n + j;
				nxt[k] = cur[k] + p.alpha * (cur[k - 1] + cur[k + 1] + cur[k - n] + cur[k + n] - 4 * cur[k]);
				change = fmax(change, fabs(nxt[k] - cur[k]));
			}
		}
		memcpy(strip, nxt + n, (size_t)rows * rowbytes); /* strip is the registered region */
		double residual;
		MPI_Allreduce(&change, &residual, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
		p.step++;
		if (p.step % every == 0 || p.step == steps) {
			check(ckpSaveAll(f), "save");
			if (rank == 0) {
				printf("checkpoint at step %" PRId64 " (residual %.6g)\n", p.step, residual);
				fflush(stdout);
				if (prog != NULL) {
					fprintf(prog, "checkpoint at step %" PRId64 "\n", p.step);
					fflush(prog);
				}
			}
		}
	}

	/* With -remote: every rank's versions committed, rank 0 reads the job version. */
	if (remote != NULL) {
		check(ckpFlush(f), "flush");
		MPI_Barrier(MPI_COMM_WORLD);
		if (rank == 0) {
			int job;
			check(ckpJobVersion(f, &job), "job version");
			printf("job version %d\n", job);
			fflush(stdout);
		}
	}

	/* The answer: the whole grid on rank 0. */
	double *grid = NULL;
	int *counts = NULL, *displs = NULL;
	if (rank == 0) {
		grid = malloc((size_t)n * rowbytes);
		counts = malloc(ranks * sizeof(int));
		displs = malloc(ranks * sizeof(int));
		for (int r = 0; r < ranks; r++) {
			int rlo = (int)((int64_t)n * r / ranks), rhi = (int)((int64_t)n * (r + 1) / ranks);
			counts[r] = (rhi - rlo) * n;
			displs[r] = rlo * n;
		}
	}
	MPI_Gatherv(strip, rows * n, MPI_DOUBLE, grid, counts, displs, MPI_DOUBLE, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		if (out != NULL) {
			FILE *o = fopen(out, "wb");
			if (o == NULL || fwrite(grid, rowbytes, n, o) != (size_t)n || fclose(o) != 0) {
				perror(out);
				MPI_Abort(MPI_COMM_WORLD, 1);
			}
		}
		printf("done: step %" PRId64 ", checksum %016" PRIx64 ", centre %.12g\n", p.step,
		       fnv1a(grid, (size_t)n * rowbytes), grid[(n / 2) * n + n / 2]);
		fflush(stdout);
	}
	check(ckpClose(f), "close");
	MPI_Finalize();
	return 0;
}
