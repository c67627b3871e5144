// SPDX-License-Identifier: GPL-2.0
/*
 * A program whose signal state, limits and fs_struct a restart must bring back
 * (tests/guest_signals.py): SIGTERM and SIGUSR1 handlers with SA_SIGINFO | SA_RESTART
 * (SIGUSR1's on the alternate stack), SIGUSR2 blocked and pending (private and shared),
 * an alternate signal stack, umask 027, RLIMIT_NOFILE soft 100, its cwd in DIR, an
 * ITIMER_REAL of an hour with a 7 s interval.
 *
 * Usage: sig_target DIR [thread]. Prints "ready PID", then "tick N" every 100 ms. On
 * SIGUSR1 it prints what it sees then: "usr1 onstack=0|1 umask=OOO nofile=SOFT itimer=SEC
 * cwd=PATH blocked_usr2=0|1"; on SIGTERM "term" and exits 0. With "thread", a second
 * thread blocks SIGUSR1, SIGUSR2, SIGTERM and SIGWINCH, has SIGWINCH pending (its own) and
 * an alternate stack of its own, and sleeps.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define ALTSTACK_SIZE (64 * 1024)

static char altstack[ALTSTACK_SIZE];
static char thread_altstack[ALTSTACK_SIZE];
static volatile sig_atomic_t thread_ready;
static volatile sig_atomic_t got_usr1, got_term, on_stack;

static void on_usr1(int sig, siginfo_t *info, void *ctx)
{
	char here;

	(void)sig;
	(void)info;
	(void)ctx;
	on_stack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
	got_usr1 = 1;
}

static void on_term(int sig, siginfo_t *info, void *ctx)
{
	(void)sig;
	(void)info;
	(void)ctx;
	got_term = 1;
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | flags;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGHUP);
	if (sigaction(sig, &sa, NULL)) {
		perror("sigaction");
		exit(2);
	}
}

static void report(void)
{
	struct itimerval it;
	struct rlimit nofile;
	char cwd[4096];
	sigset_t now;
	mode_t mask = umask(0);

	umask(mask);
	getrlimit(RLIMIT_NOFILE, &nofile);
	getitimer(ITIMER_REAL, &it);
	if (!getcwd(cwd, sizeof(cwd)))
		strcpy(cwd, "?");
	sigprocmask(SIG_BLOCK, NULL, &now);
	printf("usr1 onstack=%d umask=%03o nofile=%llu itimer=%ld cwd=%s blocked_usr2=%d\n",
	       (int)on_stack, (unsigned int)mask, (unsigned long long)nofile.rlim_cur,
	       (long)it.it_interval.tv_sec, cwd, sigismember(&now, SIGUSR2));
}

static void *second_thread(void *arg)
{
	stack_t ss = { .ss_sp = thread_altstack, .ss_size = ALTSTACK_SIZE };
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGWINCH);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pthread_kill(pthread_self(), SIGWINCH);	/* pending in this thread only */
	if (sigaltstack(&ss, NULL))
		perror("thread sigaltstack");
	thread_ready = 1;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t thread;
	struct itimerval it = { { 7, 0 }, { 3600, 0 } };
	struct rlimit nofile;
	stack_t ss;
	sigset_t set;
	int n = 0;

	if (argc < 2 || argc > 3 || chdir(argv[1])) {
		fprintf(stderr, "usage: sig_target DIR [thread]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	handle(SIGTERM, on_term, 0);
	handle(SIGUSR1, on_usr1, SA_ONSTACK);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR2);				/* private: tgkill */
	kill(getpid(), SIGUSR2);		/* shared */
	ss.ss_sp = altstack;
	ss.ss_size = ALTSTACK_SIZE;
	ss.ss_flags = 0;
	umask(027);
	getrlimit(RLIMIT_NOFILE, &nofile);
	nofile.rlim_cur = 100;
	if (sigaltstack(&ss, NULL) || setrlimit(RLIMIT_NOFILE, &nofile) ||
	    setitimer(ITIMER_REAL, &it, NULL)) {
		perror("setup");
		return 2;
	}
	if (argc == 3) {
		if (pthread_create(&thread, NULL, second_thread, NULL)) {
			perror("pthread_create");
			return 2;
		}
		while (!thread_ready)
			usleep(1000);
	}
	printf("ready %d\n", (int)getpid());
	for (;;) {
		usleep(100000);
		printf("tick %d\n", n++);
		if (got_usr1) {
			got_usr1 = 0;
			report();
		}
		if (got_term) {
			printf("term\n");
			return 0;
		}
	}
}
