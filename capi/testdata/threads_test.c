/*
 * threads_test.c: many threads call the library at once on one file (saves, restores,
 * locates, registrations and unregistrations of their own names, SaveAll and
 * RestoreAll), then one thread closes the file while the others keep calling with the
 * now stale handles. Every call must return a documented status, never crash. Run as
 * threads_test DIR.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckp_util.h"

enum { THREADS = 8, ROUNDS = 400, SIZE = 8192 };

static CheckpointFile file;
static atomic_int bad;
static atomic_int closed;

static void expect_one_of(int st, int a, int b, int c, const char *what) {
	if (st != a && st != b && st != c) {
		fprintf(stderr, "%s: unexpected status %d (%s): %s\n", what, st, ckpStrerror(st), ckpLastError());
		atomic_fetch_add(&bad, 1);
	}
}

static void *worker(void *arg) {
	long id = (long)arg;
	char name[32];
	unsigned char *region = malloc(SIZE);
	memset(region, (int)id, SIZE);
	snprintf(name, sizeof name, "t%ld", id);
	for (int i = 0; i < ROUNDS; i++) {
		int was_closed = atomic_load(&closed);
		Checkpoint c = NULL;
		int st = ckpRegister(file, name, region, SIZE, &c);
		if (was_closed) {
			expect_one_of(st, EBADF, EBADF, EBADF, "register after close");
			continue;
		}
		expect_one_of(st, 0, EBADF, EBADF, "register");
		if (st != 0) continue;
		expect_one_of(ckpSave(c), 0, EBADF, EBADF, "save");
		expect_one_of(ckpLocate(file, name) == c ? 0 : EBADF, 0, EBADF, EBADF, "locate");
		expect_one_of(ckpSaveAll(file), 0, EBADF, EBADF, "save all");
		expect_one_of(ckpRestore(c, 0), 0, EBADF, EBADF, "restore");
		/* Other threads' checkpoints come and go: RestoreAll may find one whose
		 * version of that number does not exist. */
		expect_one_of(ckpRestoreAll(file, 0), 0, EBADF, ERANGE, "restore all");
		int v;
		expect_one_of(ckpNewest(c, &v), 0, EBADF, EBADF, "newest");
		expect_one_of(ckpUnregister(c), 0, EBADF, EBADF, "unregister");
		expect_one_of(ckpSave(c), ENOENT, EBADF, EBADF, "save after unregister");
		if (region[0] != (unsigned char)id || region[SIZE - 1] != (unsigned char)id) {
			fprintf(stderr, "thread %ld: region changed\n", id);
			atomic_fetch_add(&bad, 1);
		}
	}
	free(region);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 2) return 2;
	char path[4096];
	snprintf(path, sizeof path, "%s/threads.ckp", argv[1]);
	if (ckpOpen(path, "keep=2", &file) != 0) {
		fprintf(stderr, "open: %s\n", ckpLastError());
		return 1;
	}
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(i + 1));
	/* Close while they run. */
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	int st = ckpClose(file);
	atomic_store(&closed, 1);
	if (st != 0) {
		fprintf(stderr, "close: %s\n", ckpLastError());
		return 1;
	}
	for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
	if (atomic_load(&bad) != 0) {
		fprintf(stderr, "%d unexpected statuses\n", atomic_load(&bad));
		return 1;
	}
	puts("ok");
	return 0;
}
