/* A multi-threaded process that tests/test_kmod_guest.py checkpoints and restarts with
 * crfs-restart: the main thread and two pthreads, each with its own counter.
 *
 *   threads_target LIMIT
 *
 * Every thread counts, one line per tick (~10 ms):
 *   main N pid=P tid=T tls=ok heap=ok fpu=ok      worker1 N pid=P tid=T tls=ok heap=ok fpu=ok
 * tls checks a __thread variable (each thread's fs base), heap a malloc'ed pattern of the
 * thread's own (the workers' come from glibc's per-thread arenas), fpu a value held in
 * xmm9 across the system call that sleeps. Output lines go through one stdio stream (its
 * lock is shared by the threads). A worker returns at tick LIMIT; the main thread, at
 * tick LIMIT, joins both (glibc waits for the kernel to clear each thread's tid, the
 * clear_child_tid of the image) and prints
 *   joined 2
 * then exits with status 3. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

#define HEAP_BYTES (16 * 1024)
#define WORKERS 2

static __thread unsigned int tls_id;
static unsigned long limit;

/* xmm9 survives the nanosleep: the compiler does not touch it around the asm */
static int fpu_ok(unsigned int id)
{
	double want = 1.25 + id, got;

	__asm__ volatile("movsd %0, %%xmm9" : : "m"(want) : "xmm9");
	{
		struct timespec step = {0, 10 * 1000 * 1000};

		nanosleep(&step, NULL);
	}
	__asm__ volatile("movsd %%xmm9, %0" : "=m"(got));
	return got == want;
}

static void count(const char *who, unsigned int id)
{
	unsigned long counter = 0;
	unsigned char *heap = malloc(HEAP_BYTES);
	int fpu;

	tls_id = id;
	for (unsigned long i = 0; i < HEAP_BYTES; i++)
		heap[i] = byte_at(i, id);
	while (counter < limit) {
		counter++;
		fpu = fpu_ok(id);
		printf("%s %lu pid=%d tid=%d tls=%s heap=%s fpu=%s\n", who, counter,
		       (int)getpid(), (int)gettid(), tls_id == id ? "ok" : "BAD",
		       pattern_ok(heap, HEAP_BYTES, id) ? "ok" : "BAD", fpu ? "ok" : "BAD");
	}
}

static void *worker(void *arg)
{
	unsigned int id = (unsigned int)(unsigned long)arg;
	char who[16];

	snprintf(who, sizeof(who), "worker%u", id);
	count(who, id);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t threads[WORKERS];
	int joined = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: threads_target LIMIT\n");
		return 2;
	}
	limit = strtoul(argv[1], NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned long i = 0; i < WORKERS; i++)
		if (pthread_create(&threads[i], NULL, worker, (void *)(i + 1)))
			return 2;
	count("main", 0);
	for (int i = 0; i < WORKERS; i++)
		joined += pthread_join(threads[i], NULL) == 0;
	printf("joined %d\n", joined);
	return 3;
}
