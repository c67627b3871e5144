/* The program whose pipes tests/test_kmod_guest.py (step "pipes") checkpoints and restores.
 *
 *   pipes_target DIR LIMIT
 *
 * Holds, at fixed fds (issue #11: zdtm pstree, xids00, pipe03):
 *   3  a pipe's read end, "0123456789" buffered; its write end closed (no process has it)
 *   4  a pipe of 1 MiB (F_SETPIPE_SZ), O_NONBLOCK, BIG_BYTES buffered; 5 its write end
 *   6  a pipe of 256 KiB, MID_BYTES buffered; its write end closed
 *   7  a pipe's write end; its read end closed (a write fails with EPIPE, SIGPIPE ignored)
 * then ticks (~100 ms): one line per tick on stdout, "tick N pid=P". Once DIR/stop exists
 * it checks them all and prints "pipes=ok" (or "pipes=FAIL:what"), then exits with status
 * 3; at tick LIMIT without it, with status 5. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "target_loop.h"

#define BIG_SIZE	(1 << 20)
#define BIG_BYTES	300000
#define MID_SIZE	(256 << 10)
#define MID_BYTES	100000

static char buf[BIG_SIZE];

static unsigned char pattern(long i, int seed)
{
	return (unsigned char)(i * 7 + seed);
}

/* A new pipe whose ends are moved to @r and @w (-1: that end closed), @bytes in it. */
static void make(int r, int w, int size, long bytes, int seed)
{
	int p[2];
	long i;

	if (pipe(p))
		exit(2);
	if (size && fcntl(p[1], F_SETPIPE_SZ, size) != size)
		exit(2);
	for (i = 0; i < bytes; i++)
		buf[i] = seed < 0 ? "0123456789"[i % 10] : pattern(i, seed);
	if (bytes && write(p[1], buf, bytes) != bytes)
		exit(2);
	if (r >= 0 ? dup2(p[0], r) != r : 0)
		exit(2);
	if (w >= 0 ? dup2(p[1], w) != w : 0)
		exit(2);
	close(p[0]);
	close(p[1]);
}

static void setup(void)
{
	int fd, null = open("/dev/null", O_RDONLY);

	for (fd = 3; fd <= 7; fd++)	/* taken: the pipes come above, then go there */
		if (null < 0 || (fd != null && dup2(null, fd) != fd))
			exit(2);
	if (null > 7)
		close(null);
	signal(SIGPIPE, SIG_IGN);
	make(3, -1, 0, 10, -1);
	make(4, 5, BIG_SIZE, BIG_BYTES, 1);
	make(6, -1, MID_SIZE, MID_BYTES, 2);
	make(-1, 7, 0, 0, 0);
	if (fcntl(4, F_SETFL, O_NONBLOCK) || fcntl(5, F_SETFL, O_NONBLOCK))
		exit(2);
}

/* @bytes of the pattern, then EOF (@eof) or EAGAIN. */
static int drain(int fd, long bytes, int seed, int eof)
{
	long got = 0, i;
	ssize_t n;

	while (got < bytes) {
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n <= 0)
			return 0;
		got += n;
	}
	for (i = 0; i < bytes; i++)
		if ((unsigned char)buf[i] != pattern(i, seed))
			return 0;
	n = read(fd, buf, 1);
	return eof ? n == 0 : (n < 0 && errno == EAGAIN);
}

static const char *check(void)
{
	char half[16];

	if (read(3, half, sizeof(half)) != 10 || memcmp(half, "0123456789", 10))
		return "half-bytes";
	if (read(3, half, sizeof(half)) != 0)
		return "half-eof";
	if (fcntl(4, F_GETPIPE_SZ) != BIG_SIZE || fcntl(5, F_GETPIPE_SZ) != BIG_SIZE)
		return "big-size";
	if (!drain(4, BIG_BYTES, 1, 0))
		return "big-bytes";
	if (fcntl(6, F_GETPIPE_SZ) != MID_SIZE)
		return "mid-size";
	if (!drain(6, MID_BYTES, 2, 1))
		return "mid-bytes";
	if (write(7, "x", 1) != -1 || errno != EPIPE)
		return "no-reader";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	return target_loop(argv[1], atol(argv[2]), "pipes", -1, setup, check);
}
