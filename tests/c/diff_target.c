/* A program that changes known pages and registers between two checkpoints
 * (tests/test_diff.py).
 *
 * Phase 1: a 16-page region filled with a pattern, an 8-page region, r15 = 0x1111 while it
 * sleeps. On SIGUSR1 it goes to phase 2: it rewrites pages 4..6 of the region, writes page
 * 15 unchanged (same bytes), unmaps the last 4 pages of the 8-page region, maps a new
 * 3-page region and fills it, and sleeps with r15 = 0x2222. Each phase prints one
 * "ready ..." / "changed ..." line. */
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include "ckpt_common.h"

#define PAGE 4096UL

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

/* nanosleep(1 ms) with `tag` in r15 until `go` becomes `until`. */
static void sleep_tagged(unsigned long tag, int until)
{
	struct timespec step = {0, 1000000};

	while (go != until) {
		counter++;
		asm volatile("mov %0, %%r15\n\tmov $35, %%eax\n\tsyscall"
			     : : "r"(tag), "D"(&step), "S"(0)
			     : "rax", "rcx", "r11", "r15", "memory");
	}
}

int main(void)
{
	unsigned char *region, *shrink, *fresh;
	unsigned long i;

	signal(SIGUSR1, on_usr1);
	/* Flags of their own (NORESERVE, read-only, r-x) keep the three regions from
	 * merging with their neighbours. */
	region = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	shrink = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	if (region == MAP_FAILED || shrink == MAP_FAILED)
		return 1;
	for (i = 0; i < 16 * PAGE; i++)
		region[i] = pattern(i, 1);
	memset(shrink, 0x5a, 8 * PAGE);
	mprotect(shrink, 8 * PAGE, PROT_READ);
	ready("program=%s region=%lx shrink=%lx", "diff", (unsigned long)region,
	      (unsigned long)shrink);
	sleep_tagged(0x1111, 1);
	for (i = 4 * PAGE; i < 7 * PAGE; i++)
		region[i] = pattern(i, 2);
	for (i = 15 * PAGE; i < 16 * PAGE; i++)
		region[i] = pattern(i, 1);
	munmap(shrink + 4 * PAGE, 4 * PAGE);
	fresh = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	if (fresh == MAP_FAILED)
		return 1;
	memset(fresh, 0x77, 3 * PAGE);
	mprotect(fresh, 3 * PAGE, PROT_READ | PROT_EXEC);
	printf("changed fresh=%lx\n", (unsigned long)fresh);
	fflush(stdout);
	sleep_tagged(0x2222, 2);
	return 0;
}
