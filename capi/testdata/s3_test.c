/*
 * s3_test.c: the remote tier of ckp_util.h against a real S3 server (capi's Go tests
 * start versitygw on loopback and run this program with its keys in
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY):
 *
 *     s3_test run DIR ENDPOINT BUCKET REGION      every call, and the server's outages
 *     s3_test denied DIR ENDPOINT BUCKET REGION   started with a wrong secret key
 *
 * In run mode it prints "pause stop" when the server should go down and "pause start"
 * when it should come back, and waits for a line on its standard input after each.
 * It prints one line per check and, last, "N checks, F failed"; it exits 0 only if
 * every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckp_util.h"

static int failures;
static int checks;

#define expect(st, want) expect_at(__LINE__, #st, (st), (want))

static void expect_at(int line, const char *what, int st, int want) {
	checks++;
	if (st != want) {
		failures++;
		printf("FAIL line %d: %s = %d (%s), want %d (%s); last error: %s\n", line, what, st,
		       ckpStrerror(st), want, ckpStrerror(want), ckpLastError());
	} else {
		printf("ok   line %d: %s = %d\n", line, what, st);
	}
	fflush(stdout);
}

#define truth(cond) truth_at(__LINE__, #cond, (cond))

static void truth_at(int line, const char *what, int cond) {
	checks++;
	if (!cond) {
		failures++;
		printf("FAIL line %d: %s; last error: %s\n", line, what, ckpLastError());
	} else {
		printf("ok   line %d: %s\n", line, what);
	}
	fflush(stdout);
}

#define last_error_has(s) truth_at(__LINE__, "ckpLastError() mentions \"" s "\"", strstr(ckpLastError(), s) != NULL)

static char dir[4096];

static const char *path(const char *name) {
	static char buf[8192];
	snprintf(buf, sizeof buf, "%s/%s", dir, name);
	return buf;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
	for (size_t i = 0; i < n; i++) {
		p[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 8));
	}
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* pause asks the test to do something to the server and waits until it is done. */
static void pause_for(const char *what) {
	char line[64];
	printf("pause %s\n", what);
	fflush(stdout);
	if (fgets(line, sizeof line, stdin) == NULL) {
		printf("FAIL: no answer to pause %s\n", what);
		exit(1);
	}
}

int main(int argc, char **argv) {
	if (argc != 6 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "denied") != 0)) {
		fprintf(stderr, "usage: s3_test run|denied DIR ENDPOINT BUCKET REGION\n");
		return 2;
	}
	snprintf(dir, sizeof dir, "%s", argv[2]);
	const char *endpoint = argv[3], *bucket = argv[4], *region = argv[5];
	char base[4096], opts[8192];
	snprintf(base, sizeof base, "remote=s3://%s/run endpoint=%s insecure=1 region=%s", bucket, endpoint, region);
	CheckpointFile f = NULL;
	Checkpoint a = NULL;
	int v = -1;
	double t0;

	if (strcmp(argv[1], "denied") == 0) {
		/* Wrong keys: the store refuses, ckpOpen says so at once. */
		snprintf(opts, sizeof opts, "%s timeout=30s", base);
		t0 = now();
		expect(ckpOpen(path("denied.ckp"), opts, &f), EREMOTEIO);
		last_error_has("denied");
		truth(now() - t0 < 20);
		truth(f == NULL);
		printf("%d checks, %d failed\n", checks, failures);
		return failures == 0 ? 0 : 1;
	}

	/* A bucket that does not exist. */
	snprintf(opts, sizeof opts, "remote=s3://no-such-bucket-%s/run endpoint=%s insecure=1 region=%s timeout=30s",
	         bucket, endpoint, region);
	expect(ckpOpen(path("nobucket.ckp"), opts, &f), EREMOTEIO);
	last_error_has("bucket");

	enum { N = 200000 };
	unsigned char *ra = malloc(N), *want = malloc(N);

	/* keep=1 locally, three versions in the store; max_pending=1: a save waits until
	 * the one before it is uploaded; timeout=1s. */
	snprintf(opts, sizeof opts, "%s keep=1 keep_remote=3 max_pending=1 timeout=1s", base);
	expect(ckpOpen(path("run.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 0);
	fill(ra, N, 1);
	expect(ckpSave(a), 0);
	fill(ra, N, 2);
	expect(ckpSave(a), 0);
	expect(ckpFlush(f), 0);
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 2);
	expect(ckpRestore(a, 1), 0); /* dropped locally by keep=1: from the store */
	fill(want, N, 1);
	truth(memcmp(ra, want, N) == 0);

	/* The server goes down. Saves stay local until max_pending= bytes wait; then a
	 * save waits timeout= and is not made. Every call that needs the store gives up
	 * after timeout= with EREMOTEIO and changes nothing. */
	pause_for("stop");
	fill(ra, N, 3);
	expect(ckpSave(a), 0); /* version 3: nothing was pending, so it is not held back */
	t0 = now();
	expect(ckpSave(a), EREMOTEIO); /* version 3 is pending and the store is gone */
	truth(now() - t0 >= 1 && now() - t0 < 20);
	expect(ckpNewest(a, &v), 0);
	truth(v == 3);
	t0 = now();
	expect(ckpFlush(f), EREMOTEIO);
	truth(now() - t0 >= 1 && now() - t0 < 20);
	expect(ckpJobVersion(f, &v), EREMOTEIO);
	memset(ra, 0xEE, N);
	expect(ckpRestore(a, 1), EREMOTEIO); /* in the store only */
	truth(ra[0] == 0xEE && ra[N - 1] == 0xEE);
	expect(ckpRestoreJob(f, &v), EREMOTEIO);
	truth(ra[0] == 0xEE && ra[N - 1] == 0xEE);
	expect(ckpNewest(a, &v), 0);
	truth(v == 3);

	/* Back up: the uploads, retried all along, go through. */
	pause_for("start");
	int st = EREMOTEIO;
	t0 = now();
	while (st == EREMOTEIO && now() - t0 < 60) {
		st = ckpFlush(f);
	}
	expect(st, 0);
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 3);
	fill(ra, N, 4);
	expect(ckpSave(a), 0);
	expect(ckpClose(f), 0); /* uploads version 4 */

	/* A restart on another node: a new local file, the same store. */
	snprintf(opts, sizeof opts, "%s keep=1 keep_remote=3 timeout=30s", base);
	expect(ckpOpen(path("elsewhere.ckp"), opts, &f), 0);
	memset(ra, 0, N);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 0); /* kept here: none before the restore */
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 4);
	fill(want, N, 4);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 4); /* the restore keeps what it fetched */
	expect(ckpRestore(a, 2), 0);
	fill(want, N, 2);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpClose(f), 0);

	free(ra);
	free(want);
	printf("%d checks, %d failed\n", checks, failures);
	return failures == 0 ? 0 : 1;
}
