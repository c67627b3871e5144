/* The process bench/restart_vs_criu.py checkpoints and restores (criu vs crfs).
 *
 *   dirty_heap [MIB [PERIOD_MS]]      (defaults: 256 MiB, 100 ms)
 *
 * Allocates MIB MiB of heap, writes a pattern into every page (every byte of the page: the
 * page's index in its first 8 bytes, a fill byte elsewhere), prints
 *   ready pid=P heap=0xADDR mib=MIB
 * then loops: one line per PERIOD_MS,
 *   tick N pid=P heap=ok|BAD
 * where each tick re-reads the index word of every page (so a restore that lost or moved a
 * page shows BAD at once). Never exits by itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	unsigned long period = argc > 2 ? strtoul(argv[2], NULL, 0) : 100;
	unsigned long pages = mib * 256, counter = 0;
	struct timespec step = {(time_t)(period / 1000), (long)(period % 1000) * 1000000L};
	unsigned char *heap;

	if (!mib || !period) {
		fprintf(stderr, "usage: dirty_heap [MIB [PERIOD_MS]]\n");
		return 2;
	}
	heap = malloc(pages * PAGE);
	if (!heap) {
		perror("malloc");
		return 2;
	}
	memset(heap, 0x5a, pages * PAGE);
	for (unsigned long i = 0; i < pages; i++)
		*(uint64_t *)(heap + i * PAGE) = i ^ 0xc0ffee00UL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready pid=%d heap=%p mib=%lu\n", (int)getpid(), (void *)heap, mib);
	for (;;) {
		int ok = 1;

		nanosleep(&step, NULL);
		counter++;
		for (unsigned long i = 0; i < pages; i++)
			if (*(uint64_t *)(heap + i * PAGE) != (i ^ 0xc0ffee00UL) ||
			    heap[i * PAGE + PAGE - 1] != 0x5a)
				ok = 0;
		printf("tick %lu pid=%d heap=%s\n", counter, (int)getpid(), ok ? "ok" : "BAD");
	}
}
