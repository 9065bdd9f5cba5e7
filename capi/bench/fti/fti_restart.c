/* FTI side of the restart comparison: "save" checkpoints a region 5 times at level 1
   and dies by SIGKILL; "restart" initialises FTI (which finds the checkpoint), protects
   the region and recovers it, timing that. */
#include <mpi.h>
#include <fti.h>
#include <signal.h>
#include "restart.h"

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: %s save|restart config.fti size\n", argv[0]);
		return 2;
	}
	size_t n;
	unsigned char *buf = region(argv[3], &n);
	MPI_Init(&argc, &argv);
	double t0 = now_ms();
	if (FTI_Init(argv[2], MPI_COMM_WORLD) != FTI_SCES) {
		fprintf(stderr, "FTI_Init failed\n");
		return 1;
	}
	FTI_Protect(0, buf, n, FTI_CHAR);
	if (strcmp(argv[1], "save") == 0) {
		for (int v = 1; v <= 5; v++) {
			fill(buf, n, v);
			if (FTI_Checkpoint(v, FTI_L1) != FTI_DONE) {
				fprintf(stderr, "FTI_Checkpoint failed\n");
				return 1;
			}
		}
		fflush(stdout);
		raise(SIGKILL);
	}
	if (FTI_Status() == 0) {
		fprintf(stderr, "no checkpoint to recover\n");
		return 1;
	}
	if (FTI_Recover() != FTI_SCES) {
		fprintf(stderr, "FTI_Recover failed\n");
		return 1;
	}
	double t1 = now_ms();
	if (check(buf, n, 5) != 0)
		return 1;
	printf("fti restart %.2f ms\n", t1 - t0);
	FTI_Finalize();
	MPI_Finalize();
	return 0;
}
