/*
 * api_test.c calls every function of ckp_util.h and provokes every status code it
 * documents. capi's Go tests compile it with the system's cc against libckp.so and
 * libckp.a and run it as: api_test DIR (an empty directory it may write to).
 * It prints one line per check and exits 0 only if every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckp_util.h"

static int failures;
static int checks;

/* expect checks that status st is want; on failure it prints the last error. */
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
}

/* truth checks a condition. */
#define truth(cond) truth_at(__LINE__, #cond, (cond))

static void truth_at(int line, const char *what, int cond) {
	checks++;
	if (!cond) {
		failures++;
		printf("FAIL line %d: %s; last error: %s\n", line, what, ckpLastError());
	} else {
		printf("ok   line %d: %s\n", line, what);
	}
}

/* last_error_has checks that the last error mentions s. */
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

/* A thread's last error is its own. */
static void *other_thread(void *arg) {
	(void)arg;
	int st = ckpSave((Checkpoint)NULL);
	static int ok;
	ok = st == EINVAL && strstr(ckpLastError(), "NULL Checkpoint") != NULL;
	return &ok;
}

/* The options strings ckpOpen refuses, each with a word its message must hold. */
static const struct {
	const char *options;
	const char *message;
} bad_options[] = {
	{"colour=blue", "unknown key \"colour\""},
	{"sync=sometimes", "sync=sometimes"},
	{"sync=every:0", "every:N"},
	{"sync=every:x", "every:N"},
	{"sync=interval:0s", "interval:D"},
	{"sync=interval:soon", "interval:D"},
	{"sync=none:1", "sync=none:1"},
	{"keep=-1", "keep=-1"},
	{"keep=three", "keep=three"},
	{"workers=-2", "workers=-2"},
	{"keep", "not key=value"},
	{"=3", "not key=value"},
	{"keep=1 keep=2", "given twice"},
	{"remote=s3://bucket/prefix", "remote tier not built yet"},
	{"remote=/tmp/x", "remote tier not built yet"},
	{"endpoint=localhost:9000", "remote tier not built yet"},
	{"insecure=1", "remote tier not built yet"},
	{"every=10", "remote tier not built yet"},
	{"rank=0", "remote tier not built yet"},
	{"ranks=4", "remote tier not built yet"},
};

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: api_test DIR\n");
		return 2;
	}
	snprintf(dir, sizeof dir, "%s", argv[1]);

	CheckpointFile f = NULL, g = NULL;
	Checkpoint a = NULL, b = NULL, c = NULL;
	int v = -1;
	enum { N = 100000 };
	unsigned char *ra = malloc(N), *rb = malloc(3 * N), *want = malloc(N);
	double small[4] = {1, 2, 3, 4};

	/* ckpLastError before any failure, ckpStrerror of every code. */
	truth(strcmp(ckpLastError(), "") == 0);
	truth(strcmp(ckpStrerror(0), "ckp: success") == 0);
	truth(strstr(ckpStrerror(EINVAL), "invalid argument") != NULL);
	truth(strstr(ckpStrerror(ENOENT), "not found") != NULL);
	truth(strstr(ckpStrerror(EEXIST), "already registered") != NULL);
	truth(strstr(ckpStrerror(ERANGE), "no such version") != NULL);
	truth(strstr(ckpStrerror(EMSGSIZE), "size mismatch") != NULL);
	truth(strstr(ckpStrerror(EBADF), "closed") != NULL);
	truth(strstr(ckpStrerror(EWOULDBLOCK), "locked") != NULL);
	truth(strstr(ckpStrerror(EIO), "corrupt") != NULL);
	truth(strlen(ckpStrerror(ENOSPC)) > 0);
	truth(ckpStrerror(123456) != NULL);

	/* ckpOpen: arguments and options. */
	expect(ckpOpen(NULL, NULL, &f), EINVAL);
	last_error_has("NULL pathname");
	truth(f == NULL);
	expect(ckpOpen("", NULL, &f), EINVAL);
	expect(ckpOpen(path("a.ckp"), NULL, NULL), EINVAL);
	for (size_t i = 0; i < sizeof bad_options / sizeof bad_options[0]; i++) {
		f = (CheckpointFile)1;
		expect(ckpOpen(path("a.ckp"), bad_options[i].options, &f), EINVAL);
		truth(f == NULL);
		truth_at(__LINE__, bad_options[i].message, strstr(ckpLastError(), bad_options[i].message) != NULL);
	}
	/* Every good form of every key. */
	const char *good[] = {"", "   ", "sync=none", "sync=async", "sync=always", "sync=every:5",
	                      "sync=interval:250ms keep=2", "keep=0 workers=1", "\tsync=every:1\n keep=3 "};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		expect(ckpOpen(path("opts.ckp"), good[i], &f), 0);
		truth(f != NULL);
		expect(ckpClose(f), 0);
	}
	/* An operating-system error keeps its errno: a path through a regular file. */
	FILE *plain = fopen(path("plain"), "w");
	fputs("not a directory\n", plain);
	fclose(plain);
	char through[8192];
	snprintf(through, sizeof through, "%s/x.ckp", path("plain"));
	expect(ckpOpen(through, NULL, &f), ENOTDIR);
	expect(ckpOpen(path("no/such/dir/x.ckp"), NULL, &f), ENOENT);
	/* A file that is not a ckp file: EIO, and left untouched. */
	plain = fopen(path("junk.ckp"), "w");
	for (int i = 0; i < 10000; i++) fputs("junk ", plain);
	fclose(plain);
	expect(ckpOpen(path("junk.ckp"), NULL, &f), EIO);
	struct stat sb;
	truth(stat(path("junk.ckp"), &sb) == 0 && sb.st_size == 50000);

	/* Open for real; a second writer is refused. */
	expect(ckpOpen(path("a.ckp"), "sync=every:4 keep=0", &f), 0);
	truth(f != NULL);
	expect(ckpOpen(path("a.ckp"), NULL, &g), EWOULDBLOCK);
	last_error_has("locked");
	truth(g == NULL);

	/* ckpRegister. */
	fill(ra, N, 1);
	expect(ckpRegister(NULL, "a", ra, N, &a), EINVAL);
	expect(ckpRegister(f, NULL, ra, N, &a), EINVAL);
	expect(ckpRegister(f, "", ra, N, &a), EINVAL);
	char longname[300];
	memset(longname, 'x', 256);
	longname[256] = '\0';
	expect(ckpRegister(f, longname, ra, N, &a), EINVAL);
	longname[255] = '\0';
	expect(ckpRegister(f, "a", NULL, N, &a), EINVAL);
	expect(ckpRegister(f, "a", ra, 0, &a), EINVAL);
	last_error_has("size 0");
	truth(a == NULL);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	truth(a != NULL);
	expect(ckpRegister(f, "a", rb, N, &b), EEXIST);
	last_error_has("\"a\"");
	truth(b == NULL);
	expect(ckpRegister(f, longname, small, sizeof small, NULL), 0); /* 255 bytes, no handle wanted */
	expect(ckpRegister(f, "b", rb, 3 * N, &b), 0);
	truth(b != NULL && b != a);

	/* ckpLocate. */
	truth(ckpLocate(f, "a") == a);
	truth(ckpLocate(f, "b") == b);
	c = ckpLocate(f, longname);
	truth(c != NULL && c != a && c != b);
	truth(ckpLocate(f, "nobody") == NULL);
	last_error_has("nobody");
	truth(ckpLocate(NULL, "a") == NULL);
	truth(ckpLocate(f, NULL) == NULL);

	/* Nothing saved yet. */
	expect(ckpNewest(a, &v), 0);
	truth(v == 0);
	expect(ckpNewest(a, NULL), EINVAL);
	expect(ckpNewest(NULL, &v), EINVAL);
	expect(ckpRestore(a, 0), ERANGE);
	expect(ckpRestoreAll(f, 0), ERANGE);

	/* Saves: a three times alone, everything twice together. */
	for (unsigned i = 1; i <= 3; i++) {
		fill(ra, N, i);
		expect(ckpSave(a), 0);
	}
	expect(ckpNewest(a, &v), 0);
	truth(v == 3);
	fill(ra, N, 4);
	fill(rb, 3 * N, 40);
	expect(ckpSaveAll(f), 0); /* a:4 b:1 c:1 */
	fill(ra, N, 5);
	fill(rb, 3 * N, 50);
	small[0] = 99;
	expect(ckpSaveAll(f), 0); /* a:5 b:2 c:2 */
	expect(ckpSync(f), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 5);
	expect(ckpNewest(b, &v), 0);
	truth(v == 2);
	expect(ckpSave(NULL), EINVAL);
	expect(ckpSaveAll(NULL), EINVAL);
	expect(ckpSync(NULL), EINVAL);

	/* Restores: absolute, relative, out of range; the region is untouched on error. */
	memset(ra, 0, N);
	expect(ckpRestore(a, 2), 0);
	fill(want, N, 2);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(a, 0), 0);
	fill(want, N, 5);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(a, -4), 0);
	fill(want, N, 1);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(a, 6), ERANGE);
	last_error_has("version");
	expect(ckpRestore(a, -5), ERANGE);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(NULL, 0), EINVAL);
	small[0] = 0;
	expect(ckpRestoreAll(f, -1), 0); /* a:4 b:1 c:1 */
	fill(want, N, 4);
	truth(memcmp(ra, want, N) == 0);
	truth(small[0] == 1);
	expect(ckpRestoreAll(f, 0), 0);
	truth(small[0] == 99);
	/* a has version 3, b and c do not: RestoreAll(3) fails and changes nothing. */
	expect(ckpRestoreAll(f, 3), ERANGE);
	fill(want, N, 5);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestoreAll(NULL, 0), EINVAL);

	/* A thread's last error is its own. */
	expect(ckpRegister(f, "a", ra, N, NULL), EEXIST);
	pthread_t th;
	void *res;
	pthread_create(&th, NULL, other_thread, NULL);
	pthread_join(th, &res);
	truth(*(int *)res);
	last_error_has("already registered");

	/* Unregister: the handle is gone, the versions stay, the name can come back. */
	expect(ckpUnregister(b), 0);
	expect(ckpUnregister(b), ENOENT);
	last_error_has("not registered");
	expect(ckpSave(b), ENOENT);
	expect(ckpRestore(b, 0), ENOENT);
	expect(ckpNewest(b, &v), ENOENT);
	truth(ckpLocate(f, "b") == NULL);
	expect(ckpUnregister(NULL), EINVAL);
	/* Back with a region of another size: the old versions are there but do not fit. */
	Checkpoint b2;
	expect(ckpRegister(f, "b", rb, N, &b2), 0);
	truth(b2 != b && b2 != NULL);
	expect(ckpSave(b), ENOENT); /* the old handle stays dead */
	expect(ckpNewest(b2, &v), 0);
	truth(v == 2);
	expect(ckpRestore(b2, 0), EMSGSIZE);
	last_error_has("size");
	expect(ckpRestoreAll(f, 0), EMSGSIZE);
	expect(ckpSave(b2), 0); /* version 3, of the new size */
	expect(ckpRestore(b2, 0), 0);
	expect(ckpRestore(b2, -1), EMSGSIZE);

	/* A handle of another file's checkpoint space, or a made-up one. */
	expect(ckpSave((Checkpoint)(uintptr_t)12345), EBADF);
	expect(ckpSaveAll((CheckpointFile)(uintptr_t)999), EBADF);

	/* Close: everything of the file is refused with EBADF afterwards. */
	expect(ckpClose(f), 0);
	expect(ckpClose(f), EBADF);
	last_error_has("closed");
	expect(ckpSave(a), EBADF);
	expect(ckpSaveAll(f), EBADF);
	expect(ckpRestore(a, 0), EBADF);
	expect(ckpRestoreAll(f, 0), EBADF);
	expect(ckpRegister(f, "z", ra, N, NULL), EBADF);
	expect(ckpUnregister(a), EBADF);
	expect(ckpNewest(a, &v), EBADF);
	expect(ckpSync(f), EBADF);
	truth(ckpLocate(f, "a") == NULL);
	expect(ckpClose(NULL), EINVAL);

	/* Reopen: every version is there (the lock was released). */
	expect(ckpOpen(path("a.ckp"), NULL, &g), 0);
	truth(g != f);
	expect(ckpRegister(g, "a", ra, N, &a), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 5);
	memset(ra, 0, N);
	expect(ckpRestore(a, 3), 0);
	fill(want, N, 3);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpClose(g), 0);

	/* Damage: flip one byte of a saved payload; the restore says EIO and leaves the
	 * region alone. */
	fill(ra, N, 77);
	expect(ckpOpen(path("d.ckp"), NULL, &f), 0);
	expect(ckpRegister(f, "d", ra, N, &a), 0);
	expect(ckpSave(a), 0);
	expect(ckpClose(f), 0);
	int fd = open(path("d.ckp"), O_RDWR);
	truth(fd >= 0);
	off_t size = lseek(fd, 0, SEEK_END);
	unsigned char *buf = malloc(size);
	truth(pread(fd, buf, size, 0) == size);
	off_t at = -1;
	for (off_t i = 0; i + N <= size; i++) {
		if (memcmp(buf + i, ra, 64) == 0 && memcmp(buf + i, ra, N) == 0) {
			at = i;
			break;
		}
	}
	truth(at >= 0);
	unsigned char x = buf[at + N / 2] ^ 0xff;
	truth(pwrite(fd, &x, 1, at + N / 2) == 1);
	close(fd);
	free(buf);
	expect(ckpOpen(path("d.ckp"), NULL, &f), 0);
	expect(ckpRegister(f, "d", ra, N, &a), 0);
	memset(ra, 0xAB, N);
	expect(ckpRestore(a, 0), EIO);
	last_error_has("corrupt");
	truth(ra[0] == 0xAB && ra[N - 1] == 0xAB);
	expect(ckpClose(f), 0);

	/* A data file at its maximum size: EFBIG, and the saved versions stay. */
	fill(ra, N, 5);
	expect(ckpOpen(path("full.ckp"), "max_size=300000", &f), 0);
	expect(ckpRegister(f, "full", ra, N, &a), 0);
	int saved = 0;
	int st;
	while ((st = ckpSave(a)) == 0 && saved < 1000) {
		saved++;
	}
	expect(st, EFBIG);
	last_error_has("MaxSize");
	truth(saved >= 1);
	memset(ra, 0, N);
	expect(ckpRestore(a, saved), 0);
	fill(want, N, 5);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpClose(f), 0);

	free(ra);
	free(rb);
	free(want);
	printf("%d checks, %d failed\n", checks, failures);
	return failures == 0 ? 0 : 1;
}
