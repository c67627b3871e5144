/* The program whose anon-inode files tests/test_kmod_guest.py checkpoints and restores.
 *
 *   anonfd_target DIR LIMIT
 *
 * Holds, at fixed fds:
 *   3  DIR/anon.log, O_WRONLY|O_APPEND
 *   4  an eventfd, count COUNT, O_NONBLOCK       5  dup(4): the same open file
 *   6  a timerfd (CLOCK_MONOTONIC) due in 100 s, every 7 s
 *   7  a timerfd (CLOCK_MONOTONIC) every 20 ms, unread ticks piling up
 *   8  a signalfd for SIGUSR1 and SIGUSR2 (blocked), O_NONBLOCK
 *   9  an epoll watching 4 (EPOLLIN, data EV_DATA), 8 (EPOLLIN, data 8) and 10
 *      (EPOLLIN, data 10)
 *   10 a pipe's read end, 11 its write end, PIPE_BYTES buffered in it
 *   12 a timerfd (CLOCK_REALTIME, TFD_TIMER_ABSTIME) due in 1000 s
 * then ticks (~100 ms): one line per tick on stdout and in the log, "tick N pid=P". Once
 * DIR/stop exists it checks them all and prints "anon=ok" (or "anon=FAIL:what"), then
 * exits with status 3; at tick LIMIT without it, with status 5. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "target_loop.h"

#define COUNT 5
#define EV_DATA 0x1122334455667788ULL
#define PIPE_BYTES "pipe bytes"

static char dir[4096];

static void at(int fd, int want)
{
	if (fd < 0 || (fd != want && (dup2(fd, want) < 0 || close(fd)))) {
		perror("at");
		exit(2);
	}
}

static void watch(int fd, uint64_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };

	if (epoll_ctl(9, EPOLL_CTL_ADD, fd, &ev)) {
		perror("epoll_ctl");
		exit(2);
	}
}

static void setup(void)
{
	struct itimerspec slow = { .it_value = { 100, 0 }, .it_interval = { 7, 0 } };
	struct itimerspec fast = { .it_value = { 0, 20000000 }, .it_interval = { 0, 20000000 } };
	struct itimerspec abs = { { 0, 0 }, { 0, 0 } };
	uint64_t count = COUNT;
	char path[4200];
	sigset_t mask;
	int fds[2];

	snprintf(path, sizeof(path), "%s/anon.log", dir);
	at(open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), 3);
	at(eventfd(0, EFD_NONBLOCK), 4);
	if (write(4, &count, sizeof(count)) != sizeof(count))
		exit(2);
	at(dup(4), 5);
	at(timerfd_create(CLOCK_MONOTONIC, 0), 6);
	at(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), 7);
	if (timerfd_settime(6, 0, &slow, NULL) || timerfd_settime(7, 0, &fast, NULL))
		exit(2);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	at(signalfd(-1, &mask, SFD_NONBLOCK), 8);
	if (pipe(fds))
		exit(2);
	at(fds[0], 20);
	at(fds[1], 21);
	at(20, 10);
	at(21, 11);
	if (write(11, PIPE_BYTES, strlen(PIPE_BYTES)) != (ssize_t)strlen(PIPE_BYTES))
		exit(2);
	at(epoll_create1(0), 9);
	watch(4, EV_DATA);
	watch(8, 8);
	watch(10, 10);
	at(timerfd_create(CLOCK_REALTIME, 0), 12);
	clock_gettime(CLOCK_REALTIME, &abs.it_value);
	abs.it_value.tv_sec += 1000;
	if (timerfd_settime(12, TFD_TIMER_ABSTIME, &abs, NULL))
		exit(2);
}

static uint64_t ready_mask(void)
{
	struct epoll_event evs[8];
	uint64_t seen = 0;
	int n, i;

	n = epoll_wait(9, evs, 8, 0);
	for (i = 0; i < n; i++)
		seen |= evs[i].data.u64 == EV_DATA ? 1 : evs[i].data.u64 == 8 ? 2 :
			evs[i].data.u64 == 10 ? 4 : 8;
	return seen;
}

static const char *check_timers(void)
{
	struct itimerspec its;
	uint64_t ticks = 0;

	if (timerfd_gettime(6, &its) || its.it_interval.tv_sec != 7 ||
	    its.it_value.tv_sec > 100 || its.it_value.tv_sec < 50)
		return "slow-timer";
	if (read(7, &ticks, sizeof(ticks)) != sizeof(ticks) || ticks < 1)
		return "fast-timer";
	if (timerfd_gettime(12, &its) || its.it_value.tv_sec < 500)
		return "abs-timer";
	return NULL;
}

static const char *check(void)
{
	struct signalfd_siginfo si;
	uint64_t v = 0;
	char buf[64];

	if (ready_mask() != (1 | 4))
		return "epoll-before-signal";
	raise(SIGUSR1);
	if (ready_mask() != (1 | 2 | 4))
		return "epoll-signal";
	if (read(8, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR1)
		return "signalfd";
	if (read(5, &v, sizeof(v)) != sizeof(v) || v != COUNT)
		return "eventfd-count";
	if (read(4, &v, sizeof(v)) >= 0)
		return "eventfd-shared";
	if (read(10, buf, sizeof(buf)) != (ssize_t)strlen(PIPE_BYTES) ||
	    memcmp(buf, PIPE_BYTES, strlen(PIPE_BYTES)))
		return "pipe";
	if (ready_mask() != 0)
		return "epoll-after";
	return check_timers();
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	return target_loop(argv[1], atol(argv[2]), "anon", 3, setup, check);
}
