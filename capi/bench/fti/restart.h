/* What both sides of the restart comparison share: a clock, the region's bytes at
   version v, and the check of the restored region. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fill(unsigned char *buf, size_t n, int v) {
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(i * 131 + v);
}

/* check returns 0 when buf holds version v's bytes. */
static int check(const unsigned char *buf, size_t n, int v) {
	for (size_t i = 0; i < n; i++)
		if (buf[i] != (unsigned char)(i * 131 + v)) {
			fprintf(stderr, "byte %zu differs\n", i);
			return 1;
		}
	return 0;
}

/* region parses the size argument and returns a zeroed region of that size. */
static unsigned char *region(const char *arg, size_t *n) {
	*n = strtoull(arg, NULL, 10);
	unsigned char *buf = calloc(1, *n);
	if (buf == NULL) {
		fprintf(stderr, "no memory for %zu bytes\n", *n);
		exit(1);
	}
	return buf;
}
