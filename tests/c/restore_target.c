/* The program tests/test_kmod_guest.py checkpoints and restores (built static and dynamic).
 *
 *   restore_target DATAFILE LIMIT
 *
 * Sets up state a restore must bring back, then counts: one line per tick (~10 ms),
 *   tick N pid=P heap=ok file=ok shm=ok sse=ok x87=ok mxcsr=ok mono=NS
 * and exits with status 3 when N reaches LIMIT. Each tick checks everything again:
 *   heap   64 KiB of malloc'ed pattern;
 *   file   a private, written mapping of DATAFILE (2 pages: page 0 modified, page 1 not);
 *   shm    a shared anonymous page with a pattern;
 *   sse    xmm8 holds a value across the nanosleep system call (the usual checkpoint point);
 *   x87    st(0) holds a value across the same system call;
 *   mxcsr  the rounding mode set at start (round toward zero);
 *   mono   clock_gettime(CLOCK_MONOTONIC) through the vDSO: must keep increasing. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <xmmintrin.h>

#include "pattern.h"

#define HEAP_BYTES (64 * 1024)
#define PAGE 4096
#define NOTE "modified by restore_target"

/* nanosleep(10 ms) with a value in xmm8 and one on the x87 stack across the syscall. */
static void sleep_holding(unsigned long tag, unsigned long *xmm_out, double *x87_out)
{
	struct timespec step = {0, 10 * 1000 * 1000};
	double x87_in = (double)tag + 0.25;
	long ret;

	__asm__ volatile(
		"movq %[tag], %%xmm8\n\t"
		"fldl %[x87_in]\n\t"
		"syscall\n\t"
		"fstpl %[x87_out]\n\t"
		"movq %%xmm8, %[xmm_out]\n\t"
		: "=a"(ret), [xmm_out] "=m"(*xmm_out), [x87_out] "=m"(*x87_out)
		: "a"(35L), "D"(&step), "S"(0L), [tag] "r"(tag), [x87_in] "m"(x87_in)
		: "rcx", "r11", "xmm8", "memory");
	(void)ret;
}

int main(int argc, char **argv)
{
	unsigned char *heap, *file, *shm;
	unsigned long counter = 0, limit, xmm;
	struct timespec now;
	double x87;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: restore_target DATAFILE LIMIT\n");
		return 2;
	}
	limit = strtoul(argv[2], NULL, 0);
	heap = malloc(HEAP_BYTES);
	for (unsigned long i = 0; i < HEAP_BYTES; i++)
		heap[i] = byte_at(i, 3);
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	file = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	shm = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (file == MAP_FAILED || shm == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	memcpy(file + 100, NOTE, sizeof(NOTE));
	for (unsigned long i = 0; i < PAGE; i++)
		shm[i] = byte_at(i, 5);
	_MM_SET_ROUNDING_MODE(_MM_ROUND_TOWARD_ZERO);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		counter++;
		sleep_holding(counter * 0x1001, &xmm, &x87);
		clock_gettime(CLOCK_MONOTONIC, &now);
		printf("tick %lu pid=%d heap=%s file=%s shm=%s sse=%s x87=%s mxcsr=%s mono=%lld\n",
		       counter, (int)getpid(),
		       pattern_ok(heap, HEAP_BYTES, 3) ? "ok" : "BAD",
		       !strcmp((char *)file + 100, NOTE) && file[PAGE] == 'B' ? "ok" : "BAD",
		       pattern_ok(shm, PAGE, 5) ? "ok" : "BAD",
		       xmm == counter * 0x1001 ? "ok" : "BAD",
		       x87 == (double)(counter * 0x1001) + 0.25 ? "ok" : "BAD",
		       _MM_GET_ROUNDING_MODE() == _MM_ROUND_TOWARD_ZERO ? "ok" : "BAD",
		       (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
		if (counter >= limit)
			return 3;
	}
}
