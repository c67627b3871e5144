/* Shared by the ckpt_*.c test programs of tests/test_checkpoint.py.
 *
 * Each program sets up what the test checks, prints one "ready key=value ..." line (hex
 * addresses), then keeps running so that the test can checkpoint it. `counter` goes up
 * while the program runs: the test reads it through /proc/<pid>/mem to see that the
 * process continued after the checkpoint. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long counter;

static inline void ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void ready(const char *fmt, ...)
{
	va_list ap;
	printf("ready counter=%lx ", (unsigned long)&counter);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* Count forever, sleeping 1 ms a step so that the machine stays idle. */
static inline void count_forever(void)
{
	struct timespec step = {0, 1000000};
	for (;;) {
		counter++;
		nanosleep(&step, NULL);
	}
}

/* The byte the programs write at offset i of a region tagged `seed`. */
static inline unsigned char pattern(unsigned long i, unsigned seed)
{
	return (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}
