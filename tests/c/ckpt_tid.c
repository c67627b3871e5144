/* Threads reporting their clear_child_tid and robust futex list, and threads sleeping in
 * restartable syscalls that check they are never disturbed.
 *
 * argv[1] counting workers (default 4), each in its own slot, plus three threads that spend
 * their time inside syscalls: a sleeper (nanosleep 300 ms, checking the return value and
 * the time slept), a futex waiter (FUTEX_WAIT with a 300 ms timeout: must time out) and a
 * reader (read() of a pipe nobody writes: must never return). Every thread, the main one
 * too, prints before "ready":
 *     thread role=<main|worker|sleeper|waiter|reader> tid=<hex> ctid=<hex> robust=<hex>
 *            robust_len=<hex>
 * with what prctl(PR_GET_TID_ADDRESS) and get_robust_list(0) give it. SIGUSR1 is counted
 * per thread in `stats` (handler tid and count). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "ckpt_common.h"

#define MAX_WORKERS 16
#define SLEEP_NS 300000000L

static volatile unsigned long slots[MAX_WORKERS];
static volatile struct {
	unsigned long sleeps, sleep_errors, short_sleeps;
	unsigned long waits, wait_errors, short_waits;
	unsigned long reads;        /* read() returned: must stay 0 */
	unsigned long usr1_count, usr1_tid;
} stats;
static pthread_barrier_t started;
static pthread_mutex_t out = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fds[2];
static int futex_word;

static void report(const char *role)
{
	int *ctid = NULL;
	void *head = NULL;
	size_t len = 0;
	if (prctl(PR_GET_TID_ADDRESS, &ctid, 0, 0, 0))
		exit(2);
	if (syscall(SYS_get_robust_list, 0, &head, &len))
		exit(3);
	pthread_mutex_lock(&out);
	printf("thread role=%s tid=%lx ctid=%lx robust=%lx robust_len=%lx\n", role,
	       (unsigned long)gettid(), (unsigned long)ctid, (unsigned long)head,
	       (unsigned long)len);
	pthread_mutex_unlock(&out);
}

static long elapsed_ns(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000L + (b->tv_nsec - a->tv_nsec);
}

static void *worker(void *arg)
{
	volatile unsigned long *slot = arg;
	struct timespec step = {0, 1000000};
	report("worker");
	pthread_barrier_wait(&started);
	for (;;) {
		(*slot)++;
		nanosleep(&step, NULL);
	}
	return NULL;
}

static void *sleeper(void *arg)
{
	struct timespec span = {0, SLEEP_NS}, t0, t1;
	report("sleeper");
	pthread_barrier_wait(&started);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (nanosleep(&span, NULL))
			stats.sleep_errors++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (elapsed_ns(&t0, &t1) < SLEEP_NS)
			stats.short_sleeps++;
		stats.sleeps++;
	}
	return NULL;
}

static void *waiter(void *arg)
{
	struct timespec span = {0, SLEEP_NS}, t0, t1;
	report("waiter");
	pthread_barrier_wait(&started);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &span, NULL, 0);
		if (r != -1 || errno != ETIMEDOUT)
			stats.wait_errors++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (elapsed_ns(&t0, &t1) < SLEEP_NS)
			stats.short_waits++;
		stats.waits++;
	}
	return NULL;
}

static void *reader(void *arg)
{
	char byte;
	report("reader");
	pthread_barrier_wait(&started);
	for (;;) {
		read(pipe_fds[0], &byte, 1);     /* nobody writes: returning is an error */
		stats.reads++;
	}
	return NULL;
}

static void on_usr1(int sig)
{
	stats.usr1_count++;
	stats.usr1_tid = (unsigned long)gettid();
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	pthread_t thread;
	struct sigaction sa;
	if (n < 0 || n > MAX_WORKERS || pipe(pipe_fds))
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	pthread_barrier_init(&started, NULL, n + 4);
	for (int i = 0; i < n; i++)
		if (pthread_create(&thread, NULL, worker, (void *)&slots[i]))
			return 1;
	if (pthread_create(&thread, NULL, sleeper, NULL) ||
	    pthread_create(&thread, NULL, waiter, NULL) ||
	    pthread_create(&thread, NULL, reader, NULL))
		return 1;
	report("main");
	pthread_barrier_wait(&started);
	ready("slots=%lx stats=%lx threads=%x", (unsigned long)slots, (unsigned long)&stats, n);
	count_forever();
}
