// SPDX-License-Identifier: GPL-2.0
/*
 * A process with the task state of kmod/crfs_task_state.c, for the task_state guest step
 * (tests/guest_task_state.py): oom_score_adj 400 (raised by itself), glibc's rseq
 * registration, two zombie children (one exited with 7, one killed by SIGUSR2) and one
 * child stopped by SIGSTOP, and SIGRTMIN+1 blocked and queued to itself with a value
 * and bytes in siginfo's padding (12..15), which linux-cr's siginfo does not keep. It
 * prints "ready" with the children's pids, then waits.
 * On SIGUSR1 it prints what it sees: its oom_score_adj, whether its rseq area is still
 * registered (rseq(2) registering it again fails with EBUSY), and what waitid(WNOWAIT)
 * says of each child, and the value and padding of its queued SIGRTMIN+1. On SIGTERM it continues and reaps the children, and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, term;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		usr1 = 1;
	else
		term = 1;
}

static int oom_score_adj(void)
{
	char buf[16] = "";
	int fd = open("/proc/self/oom_score_adj", O_RDONLY);

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0)
		return -9999;
	close(fd);
	return atoi(buf);
}

static const char *rseq_state(void)
{
	struct rseq *area;

	if (!__rseq_size)
		return "none";
	area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	if (syscall(SYS_rseq, area, 32, 0, RSEQ_SIG) == 0)
		return "unregistered";
	return errno == EBUSY ? "registered" : strerror(errno);
}

static void child_state(const char *name, pid_t pid)
{
	siginfo_t info;

	memset(&info, 0, sizeof(info));
	if (waitid(P_PID, pid, &info, WEXITED | WSTOPPED | WNOHANG | WNOWAIT))
		printf(" %s=%s", name, strerror(errno));
	else if (!info.si_pid)
		printf(" %s=running", name);
	else
		printf(" %s=%d/%d/%d", name, info.si_pid == pid, info.si_code, info.si_status);
}

#define RT_SIG		(SIGRTMIN + 1)
#define RT_PAD		0x5a5a5a5aU

static void queue_rt(void)
{
	siginfo_t info;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, RT_SIG);
	sigprocmask(SIG_BLOCK, &set, NULL);
	memset(&info, 0, sizeof(info));
	info.si_signo = RT_SIG;
	info.si_code = SI_QUEUE;
	info.si_pid = getpid();
	info.si_uid = getuid();
	info.si_value.sival_int = 42;
	memcpy((char *)&info + 12, &(unsigned int){ RT_PAD }, 4);
	if (syscall(SYS_rt_sigqueueinfo, getpid(), RT_SIG, &info))
		perror("rt_sigqueueinfo");
}

static void rt_state(void)
{
	struct timespec none = { 0, 0 };
	unsigned int pad = 0;
	siginfo_t info;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, RT_SIG);
	memset(&info, 0, sizeof(info));
	if (sigtimedwait(&set, &info, &none) != RT_SIG) {
		printf(" rt=none");
		return;
	}
	memcpy(&pad, (char *)&info + 12, 4);
	printf(" rt=%d/%x", info.si_value.sival_int, pad);
}

static pid_t child(int how)
{
	pid_t pid = fork();

	if (pid)
		return pid;
	if (how == 1)
		_exit(7);
	if (how == 2)
		kill(getpid(), SIGUSR2);
	for (;;)
		pause();
}

int main(void)
{
	pid_t z1, z2, st;
	siginfo_t info;
	int fd = open("/proc/self/oom_score_adj", O_WRONLY);

	if (fd < 0 || write(fd, "400", 3) != 3)
		perror("oom_score_adj");
	close(fd);
	signal(SIGUSR1, on_signal);
	signal(SIGTERM, on_signal);
	queue_rt();
	z1 = child(1);
	z2 = child(2);
	st = child(3);
	kill(st, SIGSTOP);
	while (waitid(P_PID, st, &info, WSTOPPED | WNOWAIT) && errno == EINTR)
		;
	while (waitid(P_PID, z1, &info, WEXITED | WNOWAIT) && errno == EINTR)
		;
	while (waitid(P_PID, z2, &info, WEXITED | WNOWAIT) && errno == EINTR)
		;
	printf("ready z1=%x z2=%x st=%x\n", z1, z2, st);
	fflush(stdout);
	while (!term) {
		pause();
		if (usr1) {
			usr1 = 0;
			printf("state oom=%d rseq=%s", oom_score_adj(), rseq_state());
			child_state("z1", z1);
			child_state("z2", z2);
			child_state("st", st);
			rt_state();
			printf("\n");
			fflush(stdout);
		}
	}
	kill(st, SIGKILL);
	while (wait(NULL) > 0)
		;
	printf("term\n");
	return 0;
}
