/* The "files" scenario of tests/data/criu/make-fixtures: one process holding open files
 * of every kind crfs shows in fd/ and fdinfo/, dumped by `criu dump`.
 *
 *   files_prog   (cwd: its work directory, holding data.txt)
 *
 * It opens: data.txt read-only with O_CLOEXEC at position 3, a pipe (4 bytes left in
 * it), a unix socketpair, a TCP socket listening on 127.0.0.1 (port from the kernel), an
 * eventfd (count 5, non-blocking), a timerfd (CLOCK_MONOTONIC, 100 s then every 7 s), a
 * signalfd (SIGUSR1, SIGUSR2, blocked), an epoll watching the eventfd, a memfd
 * "crfs-memfd" (8 bytes written), then prints "ready" and waits in pause(). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

static int check(int fd, const char *what)
{
	if (fd < 0) {
		perror(what);
		_exit(1);
	}
	return fd;
}

int main(void)
{
	struct itimerspec its = {.it_value = {100, 0}, .it_interval = {7, 0}};
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
	struct sockaddr_in addr = {.sin_family = AF_INET};
	int file, pipes[2], pair[2], tcp, efd, tfd, sfd, ep, mfd;
	char buf[3];
	sigset_t mask;

	setvbuf(stdout, NULL, _IOLBF, 0);
	file = check(open("data.txt", O_RDONLY | O_CLOEXEC), "open");
	check(read(file, buf, 3), "read");
	check(pipe(pipes), "pipe");
	check(write(pipes[1], "pipe", 4), "write");
	check(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), "socketpair");
	tcp = check(socket(AF_INET, SOCK_STREAM, 0), "socket");
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	check(bind(tcp, (struct sockaddr *)&addr, sizeof(addr)), "bind");
	check(listen(tcp, 4), "listen");
	efd = check(eventfd(5, EFD_NONBLOCK), "eventfd");
	tfd = check(timerfd_create(CLOCK_MONOTONIC, 0), "timerfd_create");
	check(timerfd_settime(tfd, 0, &its, NULL), "timerfd_settime");
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = check(signalfd(-1, &mask, 0), "signalfd");
	ep = check(epoll_create1(0), "epoll_create1");
	check(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), "epoll_ctl");
	mfd = check(memfd_create("crfs-memfd", 0), "memfd_create");
	check(write(mfd, "memfd-8b", 8), "write");
	printf("proc %d file=%d pipe=%d,%d pair=%d,%d tcp=%d eventfd=%d timerfd=%d "
	       "signalfd=%d epoll=%d memfd=%d\n", getpid(), file, pipes[0], pipes[1], pair[0],
	       pair[1], tcp, efd, tfd, sfd, ep, mfd);
	printf("ready\n");
	for (;;)
		pause();
	return 0;
}
