/* A process whose pages the test writes on command, for incremental checkpoints.
 * Maps PAGES anonymous pages, each starting with its index; prints
 * "ready area=<hex> pages=<hex> rseq=<hex>" (rseq: its struct rseq, whose cpu fields the
 * kernel rewrites whenever the thread returns to user space), then for each line read
 * from stdin:
 *   "w I V"  write byte value V over page I        -> "ok"
 *   "d I"    madvise(MADV_DONTNEED) page I (zeros) -> "ok"
 *   "m"      map one more page, written            -> "ok <hex address>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>

int main(int argc, char **argv)
{
	long pages = argc > 1 ? strtol(argv[1], NULL, 0) : 64;
	long page = 4096, i, v;
	char line[128];
	unsigned char *area = mmap(NULL, pages * page, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (area == MAP_FAILED)
		return 1;
	for (i = 0; i < pages; i++)
		memset(area + i * page, (int)(i & 0xff), page);
	printf("ready area=%lx pages=%lx rseq=%lx\n", (unsigned long)area, pages,
	       __rseq_size ? (unsigned long)((char *)__builtin_thread_pointer() + __rseq_offset)
			   : 0UL);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "w %ld %ld", &i, &v) == 2 && i >= 0 && i < pages) {
			memset(area + i * page, (int)v, page);
			printf("ok\n");
		} else if (sscanf(line, "d %ld", &i) == 1 && i >= 0 && i < pages) {
			madvise(area + i * page, page, MADV_DONTNEED);
			printf("ok\n");
		} else if (line[0] == 'm') {
			unsigned char *more = mmap(NULL, page, PROT_READ | PROT_WRITE,
						   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			memset(more, 0x5a, page);
			printf("ok %lx\n", (unsigned long)more);
		} else {
			printf("?\n");
		}
		fflush(stdout);
	}
	return 0;
}
