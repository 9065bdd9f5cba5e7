/*
 * savebench.c: the C side of capi's BenchmarkSave. Run as savebench FILE SIZE: it opens
 * FILE with keep=2, registers a SIZE-byte region and saves it three times (warming the
 * slots), prints "ready", then for each line N on its standard input saves the region
 * N times and prints "ok NS", NS the nanoseconds the N saves took; a line "q" (or the
 * end of input) closes the file and exits.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckp_util.h"

static void check(int st, const char *what) {
	if (st != 0) {
		fprintf(stderr, "savebench: %s: %s\n", what, ckpLastError());
		exit(1);
	}
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: savebench FILE SIZE\n");
		return 2;
	}
	size_t size = strtoull(argv[2], NULL, 10);
	unsigned char *region = malloc(size);
	for (size_t i = 0; i < size; i++) region[i] = (unsigned char)(i * 131 + (i >> 12));
	CheckpointFile f;
	Checkpoint c;
	check(ckpOpen(argv[1], "keep=2", &f), "open");
	check(ckpRegister(f, "r", region, size, &c), "register");
	for (int i = 0; i < 3; i++) check(ckpSave(c), "save");
	printf("ready\n");
	fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin) != NULL && line[0] != 'q') {
		long n = strtol(line, NULL, 10);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < n; i++) check(ckpSave(c), "save");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
		printf("ok %lld\n", (long long)ns);
		fflush(stdout);
	}
	check(ckpClose(f), "close");
	free(region);
	return 0;
}
