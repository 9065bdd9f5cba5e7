/* ckp side: "save" saves a region 5 times with sync=always keep=3 and dies by SIGKILL;
   "restart" opens, registers and restores it, timing that. */
#include <ckp_util.h>
#include <signal.h>
#include "restart.h"

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: %s save|restart file size\n", argv[0]);
		return 2;
	}
	size_t n;
	unsigned char *buf = region(argv[3], &n);
	double t0 = now_ms();
	CheckpointFile f;
	if (ckpOpen(argv[2], "sync=always keep=3", &f) != 0) {
		fprintf(stderr, "ckpOpen: %s\n", ckpLastError());
		return 1;
	}
	Checkpoint c;
	if (ckpRegister(f, "grid", buf, n, &c) != 0) {
		fprintf(stderr, "ckpRegister: %s\n", ckpLastError());
		return 1;
	}
	if (strcmp(argv[1], "save") == 0) {
		for (int v = 1; v <= 5; v++) {
			fill(buf, n, v);
			if (ckpSaveAll(f) != 0) {
				fprintf(stderr, "ckpSaveAll: %s\n", ckpLastError());
				return 1;
			}
		}
		raise(SIGKILL);
	}
	if (ckpRestoreAll(f, 0) != 0) {
		fprintf(stderr, "ckpRestoreAll: %s\n", ckpLastError());
		return 1;
	}
	double t1 = now_ms();
	if (check(buf, n, 5) != 0)
		return 1;
	printf("ckp restart %.2f ms\n", t1 - t0);
	ckpClose(f);
	return 0;
}
