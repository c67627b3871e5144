/* The program whose UNIX sockets tests/test_kmod_guest.py checkpoints and restores.
 *
 *   unix_target DIR LIMIT
 *
 * Holds, at fixed fds:
 *   3  DIR/unix.log, O_WRONLY|O_APPEND
 *   4, 5  a stream socketpair: "to four" queued for 4, "to five!" for 5
 *   6, 7  a datagram socketpair: "a", "bb" and "ccc" queued for 6, O_NONBLOCK on 6
 *   8, 9  a seqpacket socketpair: "sp1" and "sp2" queued for 9, then 8 shut for writing
 *   10 a datagram socket, unconnected
 *   11 a stream socket whose peer was closed, "orphan" queued for it
 * then ticks (~100 ms): one line per tick on stdout and in the log, "tick N pid=P". Once
 * DIR/stop exists it checks them all and prints "unix=ok" (or "unix=FAIL:what"), then
 * exits with status 3; at tick LIMIT without it, with status 5. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "target_loop.h"

static char dir[4096];

static void at(int fd, int want)
{
	if (fd < 0 || (fd != want && (dup2(fd, want) < 0 || close(fd)))) {
		perror("at");
		exit(2);
	}
}

static void pair(int type, int a, int b)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv)) {
		perror("socketpair");
		exit(2);
	}
	at(sv[0], a + 20);
	at(sv[1], b + 20);
	at(a + 20, a);
	at(b + 20, b);
}

static void put(int fd, const char *text)
{
	if (send(fd, text, strlen(text), MSG_NOSIGNAL) != (ssize_t)strlen(text))
		exit(2);
}

static void setup(void)
{
	char path[4200];
	int sv[2];

	snprintf(path, sizeof(path), "%s/unix.log", dir);
	at(open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), 3);
	pair(SOCK_STREAM, 4, 5);
	put(5, "to four");
	put(4, "to five!");
	pair(SOCK_DGRAM, 6, 7);
	put(7, "a");
	put(7, "bb");
	put(7, "ccc");
	fcntl(6, F_SETFL, O_NONBLOCK);
	pair(SOCK_SEQPACKET, 8, 9);
	put(8, "sp1");
	put(8, "sp2");
	shutdown(8, SHUT_WR);
	at(socket(AF_UNIX, SOCK_DGRAM, 0), 10);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		exit(2);
	put(sv[1], "orphan");
	close(sv[1]);
	at(sv[0], 11);
}

static int got(int fd, const char *want)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	return n == (ssize_t)strlen(want) && !memcmp(buf, want, n);
}

static const char *check(void)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (!got(4, "to four") || !got(5, "to five!"))
		return "stream";
	put(5, "again");
	if (!got(4, "again"))
		return "stream-connected";
	if (!got(6, "a") || !got(6, "bb") || !got(6, "ccc") ||
	    recv(6, &type, 1, MSG_DONTWAIT) >= 0)
		return "dgram";
	if (!(fcntl(6, F_GETFL) & O_NONBLOCK))
		return "dgram-nonblock";
	if (!got(9, "sp1") || !got(9, "sp2") || !got(9, ""))
		return "seqpacket";
	if (send(8, "x", 1, MSG_NOSIGNAL) >= 0 || errno != EPIPE)
		return "seqpacket-shutdown";
	if (getsockopt(10, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_DGRAM)
		return "unconnected";
	if (!got(11, "orphan") || !got(11, ""))
		return "orphan";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	return target_loop(argv[1], atol(argv[2]), "unix", 3, setup, check);
}
