/*
 * api_test.c calls every function of ckp_util.h and provokes every status code it
 * documents. capi's Go tests compile it with the system's cc against libckp.so and
 * libckp.a and run it as: api_test DIR (an empty directory it may write to).
 * It prints one line per check and exits 0 only if every check passed.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
	{"keep=1,keep=2", "given twice"},
	{"sync=always;keep=2", "separated by spaces or commas"},
	/* The remote tier's: a remote key without remote=, bad values, bad locations. */
	{"endpoint=localhost:9000", "endpoint= needs remote="},
	{"keep=2 every=10", "every= needs remote="},
	{"rank=0 ranks=4", "rank= needs remote="},
	{"ranks=4", "ranks= needs remote="},
	{"insecure=1", "insecure= needs remote="},
	{"region=eu-west-1", "region= needs remote="},
	{"keep_remote=2", "keep_remote= needs remote="},
	{"max_pending=4096", "max_pending= needs remote="},
	{"timeout=1s", "timeout= needs remote="},
	{"launch=job-7", "launch= needs remote="},
	{"remote=/nonexistent/ckp launch=", "launch=: want an id"},
	{"remote=", "remote=: want a location"},
	{"remote=ftp://host/x", "only s3:// and directories"},
	{"remote=s3://", "bucket"},
	{"remote=s3://Not_A_Bucket/x", "bucket"},
	{"remote=/nonexistent/ckp rank=4 ranks=4", "rank=4 is not below ranks=4"},
	{"remote=/nonexistent/ckp rank=-1 ranks=4", "rank=-1"},
	{"remote=/nonexistent/ckp rank=1", "rank=1 needs ranks="},
	{"remote=/nonexistent/ckp ranks=0", "ranks=0"},
	{"remote=/nonexistent/ckp every=two", "every=two"},
	{"remote=/nonexistent/ckp keep_remote=-1", "keep_remote=-1"},
	{"remote=/nonexistent/ckp max_pending=0", "max_pending=0"},
	{"remote=/nonexistent/ckp timeout=0s", "timeout=0s"},
	{"remote=/nonexistent/ckp timeout=soon", "timeout=soon"},
	{"remote=s3://bucket insecure=maybe", "insecure=maybe"},
	{"remote=/nonexistent/ckp endpoint=localhost:9000", "endpoint= is for an s3:// remote"},
	{"remote=dir:///nonexistent/ckp insecure=1", "insecure= is for an s3:// remote"},
};

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* entries counts the entries of a directory other than . and .. (-1 if it cannot be
 * read). */
static int entries(const char *d) {
	DIR *dp = opendir(d);
	if (dp == NULL) return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
	}
	closedir(dp);
	return n;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

/* rm_rf removes a directory tree. */
static int rm_rf(const char *d) {
	return nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* manifests returns the number of versions of checkpoint name that rank committed in
 * the directory store at root (its manifests, m/RANK/NAME/VERSION). */
static int manifests(const char *root, int rank, const char *name) {
	char d[4096], s[8192];
	snprintf(d, sizeof d, "%s/m/%d", root, rank);
	DIR *dp = opendir(d);
	if (dp == NULL) return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dp)) != NULL) { /* one directory per life of the job */
		if (e->d_name[0] == '.') continue;
		snprintf(s, sizeof s, "%s/%s/%s", d, e->d_name, name);
		int k = entries(s);
		if (k > 0) n += k;
	}
	closedir(dp);
	return n;
}

/* committed reports whether version v of name is committed by rank in root, in any
 * life of the job. */
static int committed(const char *root, int rank, const char *name, int v) {
	char d[4096], m[8192];
	struct stat sb;
	snprintf(d, sizeof d, "%s/m/%d", root, rank);
	DIR *dp = opendir(d);
	if (dp == NULL) return 0;
	int found = 0;
	struct dirent *e;
	while (!found && (e = readdir(dp)) != NULL) {
		if (e->d_name[0] == '.') continue;
		snprintf(m, sizeof m, "%s/%s/%s/%020d", d, e->d_name, name, v);
		found = stat(m, &sb) == 0;
	}
	closedir(dp);
	return found;
}

static void remote_tests(void);

/* flush_retrying calls ckpFlush until it is not EREMOTEIO, 60 times at most: with a
 * short timeout=, a flush may give up while the uploads go on. */
static int flush_retrying(CheckpointFile f) {
	int st = EREMOTEIO;
	for (int i = 0; i < 60 && st == EREMOTEIO; i++) {
		st = ckpFlush(f);
	}
	return st;
}
static void job_tests(void);

/* The child process of open_in_child: api_test --open DIR OPTIONS opens DIR/child.ckp
 * with OPTIONS, writes ckpLastError() to DIR/child.err and exits with the status. */
static int child_open(const char *options) {
	CheckpointFile f;
	int st = ckpOpen(path("child.ckp"), options, &f);
	FILE *e = fopen(path("child.err"), "w");
	if (e == NULL) return 100;
	fputs(st == 0 ? "" : ckpLastError(), e);
	fclose(e);
	if (st == 0) ckpClose(f);
	return st;
}

static char *self; /* argv[0] */
extern char **environ;

/* open_in_child runs child_open(options) in a new process of this program whose
 * environment has no AWS_ variables, and returns its status (-1 if it did not run). */
static int open_in_child(const char *options) {
	char *env[256];
	int n = 0;
	for (char **e = environ; *e != NULL && n < 255; e++) {
		if (strncmp(*e, "AWS_", 4) != 0) env[n++] = *e;
	}
	env[n] = NULL;
	char *args[] = {self, "--open", dir, (char *)options, NULL};
	pid_t pid;
	int ws;
	if (posix_spawn(&pid, self, NULL, NULL, args, env) != 0 || waitpid(pid, &ws, 0) != pid || !WIFEXITED(ws)) {
		return -1;
	}
	return WEXITSTATUS(ws);
}

/* child_error_has reports whether the child's last error mentions s. */
static int child_error_has(const char *s) {
	char buf[2048] = "";
	FILE *e = fopen(path("child.err"), "r");
	if (e == NULL) return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, e);
	buf[n] = '\0';
	fclose(e);
	return strstr(buf, s) != NULL;
}
static void fill(unsigned char *p, size_t n, unsigned seed);

int main(int argc, char **argv) {
	self = argv[0];
	if (argc == 4 && strcmp(argv[1], "--open") == 0) {
		snprintf(dir, sizeof dir, "%s", argv[2]);
		return child_open(argv[3]);
	}
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
	truth(strstr(ckpStrerror(EFBIG), "full") != NULL);
	truth(strstr(ckpStrerror(EREMOTEIO), "remote store") != NULL);
	truth(strstr(ckpStrerror(ERESTART), "ckpRestoreJob") != NULL);
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
	                      "sync=interval:250ms keep=2", "keep=0 workers=1", "\tsync=every:1\n keep=3 ",
	                      "sync=always,keep=2", "sync=every:4, keep=2,workers=1"};
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
	/* ckpVersions: the count alone, a short array, a long one. */
	int vs[8], n = -1;
	expect(ckpVersions(a, NULL, 0, &n), 0);
	truth(n == 5);
	vs[2] = -7;
	expect(ckpVersions(a, vs, 2, &n), 0);
	truth(n == 5 && vs[0] == 1 && vs[1] == 2 && vs[2] == -7);
	expect(ckpVersions(a, vs, 8, &n), 0);
	truth(n == 5 && vs[0] == 1 && vs[4] == 5);
	expect(ckpVersions(b, vs, 8, &n), 0);
	truth(n == 2 && vs[0] == 1 && vs[1] == 2);
	expect(ckpVersions(a, vs, 8, NULL), EINVAL);
	expect(ckpVersions(a, NULL, 3, &n), EINVAL);
	truth(n == 0);
	expect(ckpVersions(a, vs, -1, &n), EINVAL);
	expect(ckpVersions(NULL, vs, 8, &n), EINVAL);
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
	expect(ckpVersions(b, vs, 8, &n), ENOENT);
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
	expect(ckpVersions(a, vs, 8, &n), EBADF);
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
	remote_tests();
	job_tests();
	printf("%d checks, %d failed\n", checks, failures);
	return failures == 0 ? 0 : 1;
}

/* remote_tests: ckpFlush, ckpJobVersion, ckpRestoreJob and the remote options, with
 * directory stores (capi's Go tests run testdata/s3_test.c against a real S3 server),
 * and their errors. */
static void remote_tests(void) {
	enum { N = 50000 };
	unsigned char *ra = malloc(N), *rb = malloc(N), *want = malloc(N);
	CheckpointFile f = NULL, g = NULL;
	Checkpoint a = NULL, b = NULL;
	int v = -1;
	char store[4096], opts[8192];
	double t0;

	/* No remote tier: ckpFlush has nothing to wait for, the job calls are EINVAL. */
	expect(ckpOpen(path("local.ckp"), "keep=2", &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpSave(a), 0);
	expect(ckpFlush(f), 0);
	expect(ckpJobVersion(f, &v), EINVAL);
	last_error_has("no remote tier");
	expect(ckpRestoreJob(f, &v), EINVAL);
	last_error_has("no remote tier");
	truth(v == 0);
	expect(ckpFlush(NULL), EINVAL);
	expect(ckpJobVersion(NULL, &v), EINVAL);
	expect(ckpJobVersion(f, NULL), EINVAL);
	last_error_has("NULL version");
	expect(ckpRestoreJob(NULL, &v), EINVAL);
	expect(ckpClose(f), 0);
	expect(ckpFlush(f), EBADF);
	expect(ckpJobVersion(f, &v), EBADF);
	expect(ckpRestoreJob(f, &v), EBADF);

	/* ckpOpen's remote errors. With keys (the Go test starts this program with made-up
	 * ones), a server that does not answer is EREMOTEIO once timeout= has passed;
	 * without keys (a child process started without them: the library reads the
	 * environment the process started with), an s3:// location is EINVAL. */
	truth(getenv("AWS_ACCESS_KEY_ID") != NULL && getenv("AWS_SECRET_ACCESS_KEY") != NULL);
	f = (CheckpointFile)1;
	t0 = now();
	expect(ckpOpen(path("s3.ckp"), "remote=s3://bucket/run endpoint=127.0.0.1:1 insecure=1 timeout=300ms", &f), EREMOTEIO);
	truth(now() - t0 >= 0.3 && now() - t0 < 20);
	last_error_has("127.0.0.1:1");
	truth(f == NULL);
	expect(open_in_child("remote=s3://bucket/run endpoint=127.0.0.1:1 insecure=1"), EINVAL);
	truth(child_error_has("no credentials"));
	/* The library kept the environment the process started with: unsetenv is not seen. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	expect(ckpOpen(path("s3.ckp"), "remote=s3://bucket/run endpoint=127.0.0.1:1 insecure=1 timeout=100ms", &f), EREMOTEIO);
	/* A directory store that cannot be created. */
	snprintf(opts, sizeof opts, "remote=%s/store", path("plain"));
	expect(ckpOpen(path("d1.ckp"), opts, &f), EREMOTEIO);
	last_error_has("not a directory");
	/* A bad rank reaches no store: nothing is created. */
	snprintf(store, sizeof store, "%s", path("never"));
	snprintf(opts, sizeof opts, "remote=%s rank=2 ranks=2", store);
	expect(ckpOpen(path("d2.ckp"), opts, &f), EINVAL);
	last_error_has("rank=2 is not below ranks=2");
	struct stat sb;
	truth(stat(store, &sb) != 0);

	/* One rank, keep=2 (and so keep_remote=2): saves are uploaded, ckpFlush commits
	 * them, the store keeps the newest two. */
	snprintf(store, sizeof store, "%s", path("store1"));
	snprintf(opts, sizeof opts, "keep=2 remote=%s timeout=30s", store);
	expect(ckpOpen(path("r.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	v = -1;
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 0); /* nothing committed yet */
	for (unsigned i = 1; i <= 4; i++) {
		fill(ra, N, 100 + i);
		expect(ckpSave(a), 0);
	}
	expect(ckpFlush(f), 0);
	truth(committed(store, 0, "a", 4));
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 4);
	truth(manifests(store, 0, "a") == 2);
	truth(committed(store, 0, "a", 3) && !committed(store, 0, "a", 2));
	expect(ckpClose(f), 0);

	/* A restart elsewhere: a new local file, the same store. The local file holds
	 * nothing; versions 3 and 4 are fetched by restores; ckpRestoreJob restores 4. */
	expect(ckpOpen(path("elsewhere.ckp"), opts, &f), 0);
	memset(ra, 0, N);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 0);
	expect(ckpRestore(a, 3), 0);
	fill(want, N, 103);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(a, 2), ERANGE);
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 4);
	fill(want, N, 104);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestoreJob(f, NULL), 0); /* no version wanted */
	expect(ckpSave(a), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 5);
	expect(ckpClose(f), 0); /* waits for version 5's upload */
	truth(committed(store, 0, "a", 5));
	/* A region of another size: ckpRestoreJob fails with EMSGSIZE and writes nothing. */
	expect(ckpOpen(path("other.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N / 2, &a), 0);
	memset(ra, 0x3C, N);
	expect(ckpRestoreJob(f, &v), EMSGSIZE);
	truth(ra[0] == 0x3C && ra[N / 2 - 1] == 0x3C);
	expect(ckpClose(f), 0);

	/* every=2 uploads the even versions; keep_remote=3 keeps three of them. */
	snprintf(store, sizeof store, "%s", path("store2"));
	snprintf(opts, sizeof opts, "keep=1 remote=dir://%s every=2 keep_remote=3 max_pending=100000", store);
	expect(ckpOpen(path("e.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	for (unsigned i = 1; i <= 9; i++) {
		fill(ra, N, 200 + i);
		expect(ckpSave(a), 0);
	}
	expect(ckpFlush(f), 0);
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 8);
	truth(manifests(store, 0, "a") == 3);
	truth(committed(store, 0, "a", 4) && committed(store, 0, "a", 6) && committed(store, 0, "a", 8));
	expect(ckpRestore(a, 6), 0); /* from the store: keep=1 dropped it locally */
	fill(want, N, 206);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpRestore(a, 7), ERANGE); /* never uploaded, dropped locally */
	expect(ckpClose(f), 0);

	/* Two ranks in one store (two files of this process). Both join the job with
	 * ckpRestoreJob (a fresh start: 0). The job version is the newest both committed;
	 * a restart of the job (ckpRestoreJob, or with several ranks ckpRestoreAll of the
	 * job version) puts every rank there. */
	snprintf(store, sizeof store, "%s", path("store3"));
	snprintf(opts, sizeof opts, "keep=8 remote=%s rank=0 ranks=2", store);
	expect(ckpOpen(path("rank0.ckp"), opts, &f), 0);
	snprintf(opts, sizeof opts, "keep=8 remote=%s rank=1 ranks=2", store);
	expect(ckpOpen(path("rank1.ckp"), opts, &g), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpRegister(g, "a", rb, N, &b), 0);
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 0);
	expect(ckpRestoreJob(g, &v), 0);
	truth(v == 0);
	for (unsigned i = 1; i <= 3; i++) {
		fill(ra, N, 300 + i);
		expect(ckpSaveAll(f), 0);
	}
	for (unsigned i = 1; i <= 2; i++) {
		fill(rb, N, 310 + i);
		expect(ckpSaveAll(g), 0);
	}
	expect(ckpFlush(f), 0);
	expect(ckpFlush(g), 0);
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 2);
	expect(ckpJobVersion(g, &v), 0);
	truth(v == 2);
	/* The job restarts: rank 0's version 3 is abandoned, here and (once flushed) in
	 * the store. */
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 2);
	fill(want, N, 302);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 2);
	expect(ckpRestoreAll(g, 2), 0); /* several ranks: the same as ckpRestoreJob */
	fill(want, N, 312);
	truth(memcmp(rb, want, N) == 0);
	expect(ckpFlush(f), 0);
	truth(!committed(store, 0, "a", 3));
	fill(ra, N, 333);
	expect(ckpSaveAll(f), 0); /* the new version 3 */
	expect(ckpNewest(a, &v), 0);
	truth(v == 3);
	for (unsigned i = 3; i <= 5; i++) {
		fill(rb, N, 310 + i);
		expect(ckpSaveAll(g), 0);
	}
	expect(ckpFlush(f), 0);
	expect(ckpFlush(g), 0);
	expect(ckpJobVersion(g, &v), 0);
	truth(v == 3);
	expect(ckpRestoreAll(g, 4), ERANGE); /* not where the job restarts */
	expect(ckpClose(f), 0);
	expect(ckpClose(g), 0);

	/* No job version yet (rank 1 never saved): ckpRestoreJob starts over, leaving the
	 * region alone, and the next save is version 1. */
	snprintf(store, sizeof store, "%s", path("store4"));
	snprintf(opts, sizeof opts, "remote=%s rank=0 ranks=2", store);
	expect(ckpOpen(path("alone.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpSave(a), 0);
	expect(ckpSave(a), 0);
	expect(ckpFlush(f), 0);
	truth(committed(store, 0, "a", 2));
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 0);
	memset(ra, 0x5A, N);
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 0);
	truth(ra[0] == 0x5A && ra[N - 1] == 0x5A);
	expect(ckpNewest(a, &v), 0);
	truth(v == 0);
	expect(ckpFlush(f), 0);
	truth(manifests(store, 0, "a") == 0);
	expect(ckpSave(a), 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 1);
	expect(ckpClose(f), 0);

	/* A store that goes away: uploads are retried, ckpFlush and ckpClose give up
	 * after timeout= with EREMOTEIO, the local file keeps everything, and once the
	 * store is back a later ckpFlush (or, in a job of one rank, the next ckpOpen)
	 * uploads what was missing. */
	snprintf(store, sizeof store, "%s", path("store5"));
	snprintf(opts, sizeof opts, "keep=4 remote=%s timeout=500ms", store);
	expect(ckpOpen(path("gone.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	fill(ra, N, 501);
	expect(ckpSave(a), 0);
	expect(flush_retrying(f), 0); /* timeout= is short for a busy machine */
	truth(rm_rf(store) == 0);
	fill(ra, N, 502);
	expect(ckpSave(a), 0);
	t0 = now();
	expect(ckpFlush(f), EREMOTEIO);
	truth(now() - t0 >= 0.5 && now() - t0 < 20);
	last_error_has("deadline");
	truth(mkdir(store, 0755) == 0);
	expect(flush_retrying(f), 0);
	truth(committed(store, 0, "a", 2));
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 2);
	truth(rm_rf(store) == 0);
	fill(ra, N, 503);
	expect(ckpSave(a), 0);
	t0 = now();
	expect(ckpClose(f), EREMOTEIO);
	truth(now() - t0 >= 0.5 && now() - t0 < 20);
	expect(ckpClose(f), EBADF); /* closed all the same */
	truth(mkdir(store, 0755) == 0);
	snprintf(opts, sizeof opts, "keep=4 remote=%s timeout=30s", store);
	expect(ckpOpen(path("gone.ckp"), opts, &f), 0);
	expect(ckpFlush(f), 0);
	truth(committed(store, 0, "a", 3));
	expect(ckpJobVersion(f, &v), 0);
	truth(v == 3);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	memset(ra, 0, N);
	expect(ckpRestore(a, 0), 0);
	fill(want, N, 503);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpClose(f), 0);

	/* An upload that fails for good (rank 0's data directory is a file: the store
	 * refuses the key) is reported by the next call, and a save that reports it is not
	 * made. */
	snprintf(store, sizeof store, "%s", path("store6"));
	snprintf(opts, sizeof opts, "%s/d", store);
	truth(mkdir(store, 0755) == 0 && mkdir(opts, 0755) == 0);
	snprintf(opts, sizeof opts, "%s/d/0", store);
	FILE *blocker = fopen(opts, "w");
	truth(blocker != NULL && fclose(blocker) == 0);
	snprintf(opts, sizeof opts, "remote=%s timeout=30s", store);
	expect(ckpOpen(path("refused.ckp"), opts, &f), 0);
	expect(ckpRegister(f, "a", ra, N, &a), 0);
	expect(ckpSave(a), 0);
	expect(ckpFlush(f), EREMOTEIO);
	last_error_has("collides");
	int saved = 1;
	int st = 0;
	for (int i = 0; i < 3000 && st == 0; i++) {
		if ((st = ckpSave(a)) == 0) {
			saved++;
		} else {
			break;
		}
		struct timespec ms = {0, 10 * 1000 * 1000};
		nanosleep(&ms, NULL);
	}
	expect(st, EREMOTEIO);
	last_error_has("collides");
	expect(ckpNewest(a, &v), 0);
	truth(v == saved); /* the save that reported the failure was not made */
	st = ckpClose(f);
	truth(st == 0 || st == EREMOTEIO);

	free(ra);
	free(rb);
	free(want);
}

/* job_life checks that ckpJobLife of file says life and version. */
#define job_life(file, life, version) job_life_at(__LINE__, (file), (life), (version))

static void job_life_at(int line, CheckpointFile file, int life, int version) {
	int l = -1, v = -1;
	int st = ckpJobLife(file, &l, &v);
	char what[128];
	snprintf(what, sizeof what, "ckpJobLife = %d: life %d, version %d (want %d, %d)", st, l, v, life, version);
	truth_at(line, what, st == 0 && l == life && v == version);
}

/* open_rank opens DIR/name as rank of a job of two ranks on store, with extra options,
 * registers region "a" (n bytes) and stores its handle in *c. */
static CheckpointFile open_rank(const char *name, const char *store, int rank, const char *extra,
                                unsigned char *region, size_t n, Checkpoint *c) {
	char opts[8192];
	CheckpointFile f = NULL;
	snprintf(opts, sizeof opts, "keep=4 remote=%s rank=%d ranks=2 timeout=30s %s", store, rank, extra);
	expect(ckpOpen(path(name), opts, &f), 0);
	expect(ckpRegister(f, "a", region, n, c), 0);
	return f;
}

/* job_tests: the lives of a job (ckpJobLife), ERESTART for a rank the job went on
 * without, and launch=, with two ranks of one process on a directory store. */
static void job_tests(void) {
	enum { N = 20000 };
	unsigned char *ra = malloc(N), *rb = malloc(N), *want = malloc(N);
	CheckpointFile f = NULL, g = NULL, h = NULL;
	Checkpoint a = NULL, b = NULL, c = NULL;
	int v = -1, life = -1;
	char store[4096], opts[8192];

	/* ckpJobLife's arguments, and a file without a remote tier. */
	expect(ckpOpen(path("nolife.ckp"), NULL, &f), 0);
	expect(ckpJobLife(f, &life, &v), EINVAL);
	last_error_has("no remote tier");
	truth(life == 0 && v == 0);
	expect(ckpJobLife(f, NULL, &v), EINVAL);
	last_error_has("NULL life or version");
	expect(ckpJobLife(f, &life, NULL), EINVAL);
	expect(ckpJobLife(NULL, &life, &v), EINVAL);
	expect(ckpClose(f), 0);
	expect(ckpJobLife(f, &life, &v), EBADF);

	/* launch=: an id of up to 256 bytes. */
	snprintf(store, sizeof store, "%s", path("jobstore0"));
	memset(opts, 0, sizeof opts);
	snprintf(opts, sizeof opts, "remote=%s launch=", store);
	memset(opts + strlen(opts), 'x', 257);
	expect(ckpOpen(path("launch.ckp"), opts, &f), EINVAL);
	last_error_has("launch= of 257 bytes: at most 256");
	opts[strlen(opts) - 1] = '\0';
	expect(ckpOpen(path("launch.ckp"), opts, &f), 0);
	expect(ckpClose(f), 0);

	/* Two ranks join life 1 and complete versions 1 and 2. */
	snprintf(store, sizeof store, "%s", path("jobstore1"));
	f = open_rank("job0.ckp", store, 0, "", ra, N, &a);
	g = open_rank("job1.ckp", store, 1, "", rb, N, &b);
	job_life(f, 0, 0); /* no rank joined yet */
	expect(ckpRestoreJob(f, &v), 0);
	expect(ckpRestoreJob(g, &v), 0);
	job_life(f, 1, 0);
	for (unsigned i = 1; i <= 2; i++) {
		fill(ra, N, 600 + i);
		expect(ckpSaveAll(f), 0);
		fill(rb, N, 610 + i);
		expect(ckpSaveAll(g), 0);
	}
	expect(ckpFlush(f), 0);
	expect(ckpFlush(g), 0);
	job_life(f, 1, 2);
	job_life(g, 1, 2);

	/* Rank 1 dies and restarts on another node: its ckpRestoreJob ends life 1 and
	 * begins life 2 at version 2. Rank 0 goes on and gets ERESTART; after its own
	 * ckpRestoreJob (version 2 again) it saves with rank 1 in life 2. */
	expect(ckpClose(g), 0);
	memset(rb, 0, N);
	g = open_rank("job1-elsewhere.ckp", store, 1, "", rb, N, &b);
	v = -1;
	expect(ckpRestoreJob(g, &v), 0);
	truth(v == 2);
	fill(want, N, 612);
	truth(memcmp(rb, want, N) == 0);
	job_life(g, 2, 2);
	job_life(f, 2, 2); /* rank 0, still in life 1, reads the newest */
	fill(ra, N, 603);
	expect(ckpSaveAll(f), 0);
	expect(ckpFlush(f), ERESTART);
	last_error_has("RestoreJob");
	v = -1;
	expect(ckpRestoreJob(f, &v), 0);
	truth(v == 2);
	fill(want, N, 602);
	truth(memcmp(ra, want, N) == 0);
	expect(ckpNewest(a, &v), 0);
	truth(v == 2);
	fill(ra, N, 633);
	expect(ckpSaveAll(f), 0);
	fill(rb, N, 633);
	expect(ckpSaveAll(g), 0);
	expect(ckpFlush(f), 0);
	expect(ckpFlush(g), 0);
	job_life(f, 2, 3);
	expect(ckpJobVersion(g, &v), 0);
	truth(v == 3);
	expect(ckpClose(f), 0);
	expect(ckpClose(g), 0);

	/* A save without ckpRestoreJob, in a job that has a job version: ERESTART from
	 * ckpClose too (the file is closed all the same, and keeps the version). */
	memset(ra, 0, N);
	f = open_rank("job0-norestore.ckp", store, 0, "", ra, N, &a);
	expect(ckpSaveAll(f), 0);
	expect(ckpClose(f), ERESTART);
	expect(ckpClose(f), EBADF);

	/* launch=: ranks 0 and 1 of launch 1 join life 1, and nothing completes. Launch 2
	 * begins with a new rank 0 while launch 1's rank 1 (a zombie) still runs: the
	 * zombie's next save never counts with launch 2, it gets ERESTART. Without
	 * launch=, the same rank 1 moves on into the new life, as a rank that is alive
	 * should (the control: it shows launch= reached the job). */
	for (int with = 1; with >= 0; with--) {
		snprintf(store, sizeof store, "%s", path(with ? "jobstore2" : "jobstore3"));
		f = open_rank(with ? "l1r0.ckp" : "n1r0.ckp", store, 0, with ? "launch=4242.0" : "", ra, N, &a);
		g = open_rank(with ? "l1r1.ckp" : "n1r1.ckp", store, 1, with ? "launch=4242.0" : "", rb, N, &b);
		expect(ckpRestoreJob(f, &v), 0);
		expect(ckpRestoreJob(g, &v), 0);
		expect(ckpClose(f), 0);
		h = open_rank(with ? "l2r0.ckp" : "n2r0.ckp", store, 0, with ? "launch=4242.1" : "", ra, N, &c);
		expect(ckpRestoreJob(h, &v), 0);
		truth(v == 0);
		job_life(h, 2, 0);
		fill(rb, N, 700);
		expect(ckpSaveAll(g), 0);
		expect(ckpFlush(g), with ? ERESTART : 0);
		expect(ckpClose(g), with ? ERESTART : 0);
		expect(ckpClose(h), 0);
	}

	free(ra);
	free(rb);
	free(want);
}
