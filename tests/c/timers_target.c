/*
 * POSIX timers to checkpoint and restart (tests/guest_timers.py, tests/test_checkpoint.py).
 *
 * Fillers (created and deleted) make gaps in the ids, then:
 *   A  id 3  CLOCK_MONOTONIC  SIGEV_SIGNAL SIGUSR1, sival_int 0x1234, 100 s, every 7 s
 *   B  id 5  CLOCK_REALTIME   SIGEV_NONE, 50 s
 *   C  id 6  CLOCK_BOOTTIME   SIGEV_THREAD_ID to the worker thread, SIGRTMIN+2, sival_ptr
 *            0xabcdef, 1 ms: it fires before the checkpoint, its signal stays queued (the
 *            worker blocks it)
 *   D  id 7  CLOCK_TAI        SIGEV_SIGNAL SIGALRM, disarmed
 * Every signal is blocked. It prints "ready worker=TID" (hex), then on SIGUSR2:
 *   "timer ID value_ms=V interval_ms=I" for A, B, C, D (timer_gettime),
 *   "next ID" the id a new timer gets,
 *   and the worker "queued n=N code=C timerid=T value=HEX": the SIGRTMIN+2 it finds
 *   queued (sigtimedwait, no wait).
 * It exits on SIGTERM. With the argument "cpu", a timer E (id 8) on the process's CPU-time
 * clock too, which neither checkpointer takes. With "single": no worker thread and no C
 * (a single-threaded process: A, B and D).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOCK_TAI
#define CLOCK_TAI 11
#endif

static int pipefd[2];
static pid_t worker_tid;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void fillers(int n)
{
	timer_t t;

	while (n--) {
		if (timer_create(CLOCK_MONOTONIC, NULL, &t) || timer_delete(t))
			die("filler");
	}
}

static timer_t make(clockid_t clock, int notify, int signo, void *value, long value_ns,
		    long interval_ns)
{
	struct sigevent ev;
	struct itimerspec its = {
		.it_value = { value_ns / 1000000000L, value_ns % 1000000000L },
		.it_interval = { interval_ns / 1000000000L, interval_ns % 1000000000L },
	};
	timer_t t;

	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = notify;
	ev.sigev_signo = signo;
	ev.sigev_value.sival_ptr = value;
	if (notify & SIGEV_THREAD_ID)
		ev._sigev_un._tid = worker_tid;
	if (timer_create(clock, &ev, &t))
		die("timer_create");
	if (value_ns && timer_settime(t, 0, &its, NULL))
		die("timer_settime");
	return t;
}

static void *worker(void *arg)
{
	siginfo_t si, first;
	struct timespec zero = { 0, 0 };
	sigset_t set;
	char c;
	int n = 0;

	(void)arg;
	worker_tid = syscall(SYS_gettid);
	if (read(pipefd[0], &c, 1) != 1)
		die("read");
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 2);
	memset(&first, 0, sizeof(first));
	while (sigtimedwait(&set, &si, &zero) > 0)
		if (!n++)
			first = si;
	printf("queued n=%d code=%d timerid=%d value=%lx\n", n, first.si_code,
	       first.si_timerid, (unsigned long)first.si_value.sival_ptr);
	fflush(stdout);
	return NULL;
}

static void report(timer_t *t, int nr)
{
	struct itimerspec its;
	timer_t next;
	int i;

	for (i = 0; i < nr; i++) {
		if (timer_gettime(t[i], &its))
			die("timer_gettime");
		printf("timer %ld value_ms=%lld interval_ms=%lld\n", (long)(intptr_t)t[i],
		       its.it_value.tv_sec * 1000LL + its.it_value.tv_nsec / 1000000,
		       its.it_interval.tv_sec * 1000LL + its.it_interval.tv_nsec / 1000000);
	}
	if (timer_create(CLOCK_MONOTONIC, NULL, &next))
		die("timer_create");
	printf("next %ld\n", (long)(intptr_t)next);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	sigset_t all;
	pthread_t th;
	timer_t t[4];
	int sig;

	int single = argc > 1 && !strcmp(argv[1], "single");

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (single) {
		fillers(3);
		make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, (void *)0x1234, 100000000000L, 0);
		fillers(1);
		make(CLOCK_REALTIME, SIGEV_NONE, 0, NULL, 50000000000L, 0);
		fillers(1);
		make(CLOCK_TAI, SIGEV_SIGNAL, SIGALRM, NULL, 0, 0);
		printf("ready single=1\n");
		fflush(stdout);
		sigwait(&all, &sig);
		return 0;
	}
	if (pipe(pipefd) || pthread_create(&th, NULL, worker, NULL))
		die("setup");
	while (!__atomic_load_n(&worker_tid, __ATOMIC_SEQ_CST))
		usleep(1000);
	fillers(3);
	t[0] = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, (void *)0x1234, 100000000000L,
		    7000000000L);
	fillers(1);
	t[1] = make(CLOCK_REALTIME, SIGEV_NONE, 0, NULL, 50000000000L, 0);
	t[2] = make(CLOCK_BOOTTIME, SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGRTMIN + 2,
		    (void *)0xabcdef, 1000000L, 0);
	t[3] = make(CLOCK_TAI, SIGEV_SIGNAL, SIGALRM, NULL, 0, 0);
	if (argc > 1 && !strcmp(argv[1], "cpu"))
		make(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGALRM, NULL, 0, 0);
	usleep(100000);		/* C has fired: its signal is queued to the worker */
	printf("ready worker=%x\n", worker_tid);
	fflush(stdout);
	for (;;) {
		if (sigwait(&all, &sig))
			die("sigwait");
		if (sig == SIGTERM)
			break;
		if (sig != SIGUSR2)
			continue;
		report(t, 4);
		if (write(pipefd[1], "x", 1) != 1 || pthread_join(th, NULL))
			die("worker");
	}
	printf("term\n");
	return 0;
}
