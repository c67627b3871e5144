/* For tests/test_checkpoint.py: a process with signal, credential and fs state to save.
 *
 * SIGUSR1 has a handler (SA_RESTART, SIGTERM blocked while it runs), SIGPIPE is ignored,
 * SIGUSR2 is blocked and pending (queued with sigqueue, value 4242), an alternate signal
 * stack is set, RLIMIT_NOFILE is lowered, the umask is 027, ITIMER_REAL is armed far ahead,
 * the parent-death signal is SIGUSR1 and the working directory is argv[1]. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include "ckpt_common.h"

static volatile sig_atomic_t got;
static void on_usr1(int sig) { got = sig; }

int main(int argc, char **argv)
{
	if (argc != 2 || chdir(argv[1]))
		return 2;
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	union sigval value = { .sival_int = 4242 };
	sigqueue(getpid(), SIGUSR2, value);
	static char stack[65536];
	stack_t ss = { .ss_sp = stack, .ss_size = sizeof(stack) };
	sigaltstack(&ss, NULL);
	struct rlimit nofile = { 100, 200 };
	setrlimit(RLIMIT_NOFILE, &nofile);
	umask(027);
	struct itimerval timer = { { 7, 0 }, { 3600, 0 } };
	setitimer(ITIMER_REAL, &timer, NULL);
	prctl(PR_SET_PDEATHSIG, SIGUSR1);
	ready("handler=%lx stack=%lx", (unsigned long)on_usr1, (unsigned long)stack);
	count_forever();
}
