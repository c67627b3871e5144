/* For tests/test_checkpoint.py: a process with open files to save.
 *
 * argv[1] is a directory: the program opens argv[1]/log O_WRONLY|O_APPEND and writes 12
 * bytes to it, dup()s it, opens /dev/null, argv[1] itself as a directory fd, a pipe with
 * "0123456789" in it, /dev/null again O_RDWR|O_CLOEXEC, a FIFO argv[1]/fifo (O_RDWR, 3 bytes
 * in it), an eventfd with count 5, a UNIX datagram socket, and argv[1]/gone deleted while
 * open (position 4), a CLOCK_MONOTONIC timerfd (1000 s, then every 2.5 s) and a signalfd
 * of SIGUSR1 and SIGUSR2 (O_NONBLOCK), an epoll watching the pipe's read end (EPOLLIN, data
 * 0x1234) and the eventfd (EPOLLIN|EPOLLET, data 7). Prints the fd numbers (hex) on its ready line. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ckpt_common.h"

static char path[4096];

static const char *in_dir(const char *dir, const char *name)
{
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	const char *dir = argv[1];
	int log = open(in_dir(dir, "log"), O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (log < 0 || write(log, "hello world\n", 12) != 12)
		return 1;
	int dup_log = dup(log);
	int null = open("/dev/null", O_RDONLY);
	int null2 = open("/dev/null", O_RDONLY);	/* same inode, flags, pos: another file */
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	int p[2];
	if (pipe(p) || write(p[1], "0123456789", 10) != 10)
		return 1;
	int cloexec = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (mkfifo(in_dir(dir, "fifo"), 0600))
		return 1;
	int fifo = open(in_dir(dir, "fifo"), O_RDWR);
	if (fifo < 0 || write(fifo, "abc", 3) != 3)
		return 1;
	int efd = eventfd(5, 0);
	int sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	int gone = open(in_dir(dir, "gone"), O_RDWR | O_CREAT, 0600);
	if (gone < 0 || write(gone, "data", 4) != 4 || unlink(in_dir(dir, "gone")))
		return 1;
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { .it_value = { 1000, 0 }, .it_interval = { 2, 500000000 } };
	if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL))
		return 1;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234 };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		return 1;
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 7 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		return 1;
	ready("log=%x dup=%x null=%x dir=%x pr=%x pw=%x cloexec=%x fifo=%x efd=%x sock=%x gone=%x "
	      "tfd=%x sfd=%x ep=%x null2=%x", log, dup_log, null, dirfd, p[0], p[1], cloexec, fifo, efd,
	      sock, gone, tfd, sfd, ep, null2);
	count_forever();
}
