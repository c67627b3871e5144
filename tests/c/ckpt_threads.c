/* Several threads (argv[1], default 4), each counting in its own slot. */
#include <pthread.h>
#include "ckpt_common.h"

#define MAX_THREADS 16

static volatile unsigned long slots[MAX_THREADS];
static pthread_barrier_t started;

static void *worker(void *arg)
{
	volatile unsigned long *slot = arg;
	struct timespec step = {0, 1000000};
	(*slot)++;      /* nonzero before "ready", which the test checks */
	pthread_barrier_wait(&started);
	for (;;) {
		(*slot)++;
		nanosleep(&step, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t threads[MAX_THREADS];
	if (n < 1 || n > MAX_THREADS)
		return 1;
	pthread_barrier_init(&started, NULL, n + 1);
	for (int i = 0; i < n; i++)
		if (pthread_create(&threads[i], NULL, worker, (void *)&slots[i]))
			return 1;
	pthread_barrier_wait(&started);
	ready("slots=%lx threads=%d", (unsigned long)slots, n);
	count_forever();
}
