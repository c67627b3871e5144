// SPDX-License-Identifier: GPL-2.0
/*
 * A process with the attributes of CRFS_HDR_TASK_MISC (kmod/crfs_task_misc.c), for
 * tests/test_checkpoint.py and the taskattr guest step (tests/guest_taskattr.py): it
 * sets its personality READ_IMPLIES_EXEC|ADDR_COMPAT_LAYOUT (not ADDR_NO_RANDOMIZE,
 * which crfs-restart gives itself), PR_SET_THP_DISABLE, PR_SET_CHILD_SUBREAPER, nice 7
 * and SCHED_BATCH, arms ITIMER_VIRTUAL (1000 s, interval 500 s) and ITIMER_PROF (2000 s,
 * 700 s), then clones a child whose exit signal is SIGUSR1, which forks a grandchild
 * (both pause), and prints "ready child=<hex pid> grandchild=<hex pid>".
 * On SIGUSR2 it prints "itimers" with getitimer()'s values and intervals (ms), then
 * "attr" and what it sees of itself (personality, prctl answers,
 * nice, policy and rt_priority) and of its child (exit_signal from /proc/PID/stat,
 * whether waitid() without __WCLONE sees it: a clone child it must not). On SIGTERM it
 * kills the child, reaps it with __WCLONE: the grandchild, orphaned, must be adopted by
 * this subreaper (the child's has_child_subreaper), not by init; it prints "term usr1=N
 * adopted=A" (N: the SIGUSR1s the child's end sent, A: 1 when the grandchild's parent is
 * now this process), kills and reaps the grandchild, and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define PERSONA		(READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT)

static volatile sig_atomic_t usr1, usr2, term;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		usr1++;
	else if (sig == SIGUSR2)
		usr2 = 1;
	else
		term = 1;
}

static int stat_field(pid_t pid, int field)
{
	char path[64], buf[1024], *p;
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -999;
	buf[fread(buf, 1, sizeof(buf) - 1, f)] = 0;
	fclose(f);
	p = strrchr(buf, ')');
	for (i = 2; p && i < field; i++)
		p = strchr(p + 1, ' ');
	return p ? atoi(p + 1) : -999;
}

static long ms(const struct timeval *tv)
{
	return tv->tv_sec * 1000L + tv->tv_usec / 1000;
}

static void report(pid_t child)
{
	struct itimerval virt, prof;
	int subreaper = -1;
	struct sched_param sp = { 0 };
	siginfo_t info;
	const char *plain;

	prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
	sched_getparam(0, &sp);
	memset(&info, 0, sizeof(info));
	if (waitid(P_PID, child, &info, WEXITED | WNOHANG | WNOWAIT) == 0)
		plain = "seen";
	else
		plain = errno == ECHILD ? "ECHILD" : strerror(errno);
	getitimer(ITIMER_VIRTUAL, &virt);
	getitimer(ITIMER_PROF, &prof);
	printf("itimers virt=%ld/%ld prof=%ld/%ld\n", ms(&virt.it_value),
	       ms(&virt.it_interval), ms(&prof.it_value), ms(&prof.it_interval));
	printf("attr persona=%x thp_disable=%d subreaper=%d nice=%d policy=%d rtprio=%d"
	       " child_exit_signal=%d plain_wait=%s\n", personality(0xffffffff),
	       prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), subreaper,
	       getpriority(PRIO_PROCESS, 0), sched_getscheduler(0), sp.sched_priority,
	       stat_field(child, 38), plain);
	fflush(stdout);
}

static void pause_forever(void)
{
	for (;;)
		pause();
}

/* The clone child and, forked by it, the grandchild; both pause. */
static pid_t clone_child(int ready[2])
{
	pid_t pid = syscall(SYS_clone, SIGUSR1, 0, 0, 0, 0), grandchild;

	if (pid)
		return pid;
	grandchild = fork();
	if (grandchild && write(ready[1], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
		_exit(1);
	close(ready[0]);	/* no pipe left in the image */
	close(ready[1]);
	pause_forever();
	return 0;
}

/* The child ends: its orphan goes to the nearest subreaper above it, this process. */
static void end_child(pid_t child)
{
	char path[64];
	pid_t grandchild = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", child, child);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%d", &grandchild) != 1)
		grandchild = 0;
	if (f)
		fclose(f);
	kill(child, SIGKILL);
	while (waitpid(child, NULL, __WCLONE) < 0 && errno == EINTR)
		;
	printf("term usr1=%d adopted=%d\n", (int)usr1,
	       grandchild > 0 && stat_field(grandchild, 4) == getpid());
	if (grandchild > 0)
		kill(grandchild, SIGKILL);
	while (wait(NULL) > 0 || errno == EINTR)
		;
}

static void setup(void)
{
	struct sched_param none = { 0 };
	struct itimerval virt = { { 500, 0 }, { 1000, 0 } };
	struct itimerval prof = { { 700, 0 }, { 2000, 0 } };

	if (personality(PERSONA) < 0)
		perror("personality");
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		perror("PR_SET_THP_DISABLE");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		perror("PR_SET_CHILD_SUBREAPER");
	if (setpriority(PRIO_PROCESS, 0, 7))
		perror("setpriority");
	if (sched_setscheduler(0, SCHED_BATCH, &none))
		perror("SCHED_BATCH");
	if (setitimer(ITIMER_VIRTUAL, &virt, NULL) || setitimer(ITIMER_PROF, &prof, NULL))
		perror("setitimer");
}

int main(void)
{
	pid_t child, grandchild = 0;
	int ready[2];

	signal(SIGUSR1, on_signal);
	signal(SIGUSR2, on_signal);
	signal(SIGTERM, on_signal);
	setup();
	if (pipe(ready))
		return 1;
	child = clone_child(ready);
	if (read(ready[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
		perror("grandchild");
	close(ready[0]);
	close(ready[1]);
	printf("ready child=%x grandchild=%x\n", child, grandchild);
	fflush(stdout);
	while (!term) {
		pause();
		if (usr2) {
			usr2 = 0;
			report(child);
		}
	}
	end_child(child);
	return 0;
}
