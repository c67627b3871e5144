/* The program whose open files tests/test_kmod_guest.py checkpoints and restores.
 *
 *   files_target DIR LIMIT
 *
 * Opens, at fixed fds:
 *   3  DIR/files.log, O_WRONLY|O_APPEND      4  DIR/files.data, O_RDWR, at 1234
 *   5  DIR, a directory fd                   6  /dev/null, O_WRONLY
 *   7  a pipe's read end, 8 its write end, PIPE_BYTES buffered in it
 *   9  dup(4): the same open file (shared offset)
 *   10 DIR/files.data, O_RDONLY|O_CLOEXEC    20 /dev/zero, O_RDONLY
 * then ticks (~100 ms): one line per tick on stdout and in the log,
 *   tick N pid=P files=ok
 * checking every fd again (files=FAIL:what otherwise); fds 11-19 must be closed. Once
 * DIR/stop exists it reads the pipe, prints "pipe=ok" when it held PIPE_BYTES, and exits
 * with status 3; at tick LIMIT without it, with status 5. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define PIPE_BYTES "bytes buffered in the pipe at checkpoint time"
#define POS 1234
#define DATA_SIZE 4096

static char dir[4096];

static void at_flags(int fd, int want, int flags)
{
	if (fd != want && (dup3(fd, want, flags) < 0 || close(fd))) {
		perror("dup2");
		exit(2);
	}
}

static void at(int fd, int want)
{
	at_flags(fd, want, 0);
}

static void setup(void)
{
	char path[4200], data[DATA_SIZE];
	int fds[2], i, fd;

	snprintf(path, sizeof(path), "%s/files.data", dir);
	for (i = 0; i < DATA_SIZE; i++)
		data[i] = (char)(i % 251);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, DATA_SIZE) != DATA_SIZE)
		exit(2);
	at(fd, 4);
	lseek(4, POS, SEEK_SET);
	at_flags(open(path, O_RDONLY | O_CLOEXEC), 10, O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/files.log", dir);
	at(open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), 3);
	at(open(dir, O_RDONLY | O_DIRECTORY), 5);
	at(open("/dev/null", O_WRONLY), 6);
	at(open("/dev/zero", O_RDONLY), 20);
	if (pipe(fds))
		exit(2);
	at(fds[0], 17);		/* out of the way of 7 and 8 */
	at(fds[1], 18);
	at(17, 7);
	at(18, 8);
	if (write(8, PIPE_BYTES, strlen(PIPE_BYTES)) != (ssize_t)strlen(PIPE_BYTES))
		exit(2);
	at(dup(4), 9);
}

static int is_dev(int fd, int major_, int minor_)
{
	struct stat st;

	return !fstat(fd, &st) && S_ISCHR(st.st_mode) && major(st.st_rdev) == (unsigned)major_ &&
	       minor(st.st_rdev) == (unsigned)minor_;
}

/* Shared offset: reading one byte through fd 9 moves fd 4; the byte is the pattern's. */
static const char *check_shared(void)
{
	unsigned char c;

	if (lseek(4, 0, SEEK_CUR) != POS || lseek(9, 0, SEEK_CUR) != POS)
		return "position";
	if (read(9, &c, 1) != 1 || c != POS % 251)
		return "data";
	if (lseek(4, 0, SEEK_CUR) != POS + 1)
		return "shared-offset";
	lseek(4, POS, SEEK_SET);
	return NULL;
}

static const char *check(void)
{
	struct stat st, dst;
	int fd, n;
	const char *shared;

	if ((fcntl(3, F_GETFL) & (O_ACCMODE | O_APPEND)) != (O_WRONLY | O_APPEND))
		return "log-flags";
	if ((fcntl(4, F_GETFL) & O_ACCMODE) != O_RDWR)
		return "data-flags";
	shared = check_shared();
	if (shared)
		return shared;
	if (fstat(5, &st) || stat(dir, &dst) || !S_ISDIR(st.st_mode) || st.st_ino != dst.st_ino)
		return "dir";
	if (!is_dev(6, 1, 3) || (fcntl(6, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return "null";
	if (!is_dev(20, 1, 5))
		return "zero";
	if (ioctl(7, FIONREAD, &n) || n != (int)strlen(PIPE_BYTES))
		return "pipe-count";
	if ((fcntl(7, F_GETFL) & O_ACCMODE) != O_RDONLY ||
	    (fcntl(8, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return "pipe-ends";
	if (fcntl(10, F_GETFD) != FD_CLOEXEC || fcntl(4, F_GETFD) != 0 ||
	    fcntl(3, F_GETFD) != 0)
		return "cloexec";
	for (fd = 11; fd < 20; fd++)
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			return "closed";
	return NULL;
}

static const char *check_pipe(void)
{
	char buf[256];
	ssize_t n = read(7, buf, sizeof(buf));

	if (n != (ssize_t)strlen(PIPE_BYTES) || memcmp(buf, PIPE_BYTES, n))
		return "FAIL";
	return "ok";
}

int main(int argc, char **argv)
{
	struct timespec step = {0, 100 * 1000 * 1000};
	char line[256], stop[4200];
	long limit, n;
	const char *bad;
	int len;

	if (argc != 3)
		return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	limit = atol(argv[2]);
	snprintf(stop, sizeof(stop), "%s/stop", dir);
	setup();
	for (n = 1; ; n++) {
		bad = check();
		len = snprintf(line, sizeof(line), "tick %ld pid=%d files=%s%s\n", n, getpid(),
			       bad ? "FAIL:" : "ok", bad ? bad : "");
		if (write(1, line, len) != len || write(3, line, len) != len)
			return 4;
		if (!access(stop, F_OK)) {
			printf("pipe=%s\n", check_pipe());
			fflush(stdout);
			return 3;
		}
		if (n >= limit)
			return 5;
		nanosleep(&step, NULL);
	}
}
