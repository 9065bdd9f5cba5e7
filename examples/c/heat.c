/*
 * heat solves the 2-D heat equation on a square plate with an explicit finite
 * difference scheme, in C, and checkpoints its state with ckp every few steps through
 * ckp_util.h. Killed at any moment (kill -9 included) and started again with the same
 * arguments, it resumes from the newest checkpoint and finishes with exactly the answer
 * of an uninterrupted run (examples/heat is the same program in Go).
 *
 *     cc -I capi examples/c/heat.c -L . -lckp -Wl,-rpath,$PWD -o heat
 *     ./heat -ckpt /tmp/heat.ckp -n 256 -steps 5000 -every 100 -out grid.bin
 *
 * The grid and the step counter are saved together with ckpSaveAll, so a restart never
 * sees a grid from one step with the counter of another.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckp_util.h"

/* progress is the solver's position: saved with the grid in the same ckpSaveAll. */
struct progress {
	int64_t step;
	int64_t n;
	double alpha;
};

static void usage(void) {
	fprintf(stderr, "usage: heat [-ckpt FILE] [-n N] [-steps S] [-every E] [-keep K] [-sync] [-out FILE]\n");
	exit(2);
}

/* check exits with the library's message if st is a failure. */
static void check(int st, const char *what) {
	if (st != 0) {
		fprintf(stderr, "heat: %s: %s (%s)\n", what, ckpLastError(), ckpStrerror(st));
		exit(1);
	}
}

/* initial sets a hot square in the middle of a cold plate with a warm left edge. */
static void initial(double *g, int n) {
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < n; j++) {
			if (j == 0) {
				g[i * n + j] = 50;
			} else if (i > n / 3 && i < 2 * n / 3 && j > n / 3 && j < 2 * n / 3) {
				g[i * n + j] = 100;
			} else {
				g[i * n + j] = 0;
			}
		}
	}
}

/* step computes one explicit time step: interior points move towards the mean of
 * their four neighbours; the edges stay fixed. */
static void step(double *dst, const double *src, int n, double alpha) {
	memcpy(dst, src, (size_t)n * n * sizeof *dst);
	for (int i = 1; i < n - 1; i++) {
		for (int j = 1; j < n - 1; j++) {
			int k = i * n + j;
			dst[k] = src[k] + alpha * (src[k - 1] + src[k + 1] + src[k - n] + src[k + n] - 4 * src[k]);
		}
	}
}

/* fnv1a is the FNV-1a hash of n bytes: the answer's fingerprint. */
static uint64_t fnv1a(const void *p, size_t n) {
	const unsigned char *b = p;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++) {
		h = (h ^ b[i]) * 1099511628211ULL;
	}
	return h;
}

int main(int argc, char **argv) {
	const char *path = "heat.ckp", *out = NULL;
	int n = 128, keep = 3, sync = 0;
	int64_t steps = 2000, every = 50;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-sync") == 0) {
			sync = 1;
			continue;
		}
		if (i + 1 >= argc) usage();
		const char *v = argv[++i];
		if (strcmp(a, "-ckpt") == 0) path = v;
		else if (strcmp(a, "-out") == 0) out = v;
		else if (strcmp(a, "-n") == 0) n = atoi(v);
		else if (strcmp(a, "-steps") == 0) steps = atoll(v);
		else if (strcmp(a, "-every") == 0) every = atoll(v);
		else if (strcmp(a, "-keep") == 0) keep = atoi(v);
		else usage();
	}
	if (n < 3 || steps < 0 || every < 1 || keep < 0) {
		fprintf(stderr, "heat: need -n >= 3, -steps >= 0, -every >= 1, -keep >= 0\n");
		return 2;
	}

	char options[64];
	snprintf(options, sizeof options, "keep=%d sync=%s", keep, sync ? "always" : "none");
	CheckpointFile f;
	check(ckpOpen(path, options, &f), "open");

	size_t bytes = (size_t)n * n * sizeof(double);
	double *grid = malloc(bytes), *next = malloc(bytes);
	struct progress p = {0, n, 0.2};
	Checkpoint cgrid, cprog;
	/* The regions stay valid until ckpClose: the library reads them on every save. */
	check(ckpRegister(f, "grid", grid, bytes, &cgrid), "register grid");
	check(ckpRegister(f, "progress", &p, sizeof p, &cprog), "register progress");

	int newest;
	check(ckpNewest(cprog, &newest), "newest");
	if (newest > 0) {
		check(ckpRestoreAll(f, 0), "restore");
		if (p.n != n) {
			fprintf(stderr, "heat: checkpoint is for n=%" PRId64 ", not %d\n", p.n, n);
			return 1;
		}
		printf("resumed at step %" PRId64 "\n", p.step);
		fflush(stdout);
	} else {
		initial(grid, n);
	}
	while (p.step < steps) {
		step(next, grid, n, p.alpha);
		memcpy(grid, next, bytes); /* grid is the registered region */
		p.step++;
		if (p.step % every == 0 || p.step == steps) {
			check(ckpSaveAll(f), "save");
			printf("checkpoint at step %" PRId64 "\n", p.step);
			fflush(stdout);
		}
	}
	if (out != NULL) {
		FILE *o = fopen(out, "wb");
		if (o == NULL || fwrite(grid, 1, bytes, o) != bytes || fclose(o) != 0) {
			perror(out);
			return 1;
		}
	}
	printf("done: step %" PRId64 ", checksum %016" PRIx64 ", centre %.12g\n", p.step, fnv1a(grid, bytes),
	       grid[(n / 2) * n + n / 2]);
	check(ckpClose(f), "close");
	free(grid);
	free(next);
	return 0;
}
