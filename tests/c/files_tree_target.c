/* Two processes sharing a pipe and an open file, for tests/test_kmod_guest.py.
 *
 *   files_tree_target DIR LIMIT
 *
 * The parent opens DIR/tree.log (fd 3, O_WRONLY, not O_APPEND: its offset is the one the
 * two processes share) and a pipe (read end fd 7, write end fd 8), then forks. The child
 * writes "child N" into the pipe and into the log every ~100 ms, until DIR/stop exists
 * (or N reaches LIMIT). The parent reads the pipe (blocking) and, per line, prints
 * "got child N" on stdout and writes "parent N" into the log; at EOF it prints "eof",
 * waits for the child and exits with status 3. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void at(int fd, int want)
{
	if (fd < 0 || (fd != want && (dup2(fd, want) < 0 || close(fd))))
		exit(2);
}

static void child(const char *dir, long limit)
{
	struct timespec step = {0, 100 * 1000 * 1000};
	char stop[4200], line[64];
	long n;
	int len;

	close(7);
	snprintf(stop, sizeof(stop), "%s/stop", dir);
	for (n = 1; n <= limit && access(stop, F_OK); n++) {
		len = snprintf(line, sizeof(line), "child %ld\n", n);
		if (write(8, line, len) != len || write(3, line, len) != len)
			_exit(4);
		nanosleep(&step, NULL);
	}
	_exit(0);
}

static void parent(void)
{
	char buf[4096], line[64], *start, *nl;
	size_t have = 0;
	ssize_t got;
	int len, status;

	close(8);
	for (;;) {
		got = read(7, buf + have, sizeof(buf) - 1 - have);
		if (got <= 0)
			break;
		have += got;
		buf[have] = '\0';
		for (start = buf; (nl = strchr(start, '\n')); start = nl + 1) {
			*nl = '\0';
			printf("got %s\n", start);
			fflush(stdout);
			len = snprintf(line, sizeof(line), "parent %s\n", start + 6);
			if (write(3, line, len) != len)
				exit(4);
		}
		have -= start - buf;
		memmove(buf, start, have);
	}
	printf("eof\n");
	fflush(stdout);
	wait(&status);
	exit(3);
}

int main(int argc, char **argv)
{
	char path[4200];
	int fds[2];
	pid_t pid;

	if (argc != 3)
		return 2;
	snprintf(path, sizeof(path), "%s/tree.log", argv[1]);
	at(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), 3);
	if (pipe(fds))
		return 2;
	at(fds[0], 17);
	at(fds[1], 18);
	at(17, 7);
	at(18, 8);
	pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0)
		child(argv[1], atol(argv[2]));
	parent();
	return 0;
}
