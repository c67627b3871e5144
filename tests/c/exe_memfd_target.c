/*
 * Target of the guest step "exe_memfd" (tests/guest_exe.py): what /proc/PID/exe and a memfd
 * opened twice look like after a restart.
 *   parent: fd 10, a memfd "crfs-shared" O_RDWR holding "hello", at position 1;
 *           fds 20..36, 17 empty memfds "crfs-many";
 *   child:  none of those (closed after the fork); fd 11, the parent's memfd opened again
 *           through /proc/PPID/fd/10 O_RDONLY (a second open file description of the same
 *           inode), at position 2.
 * Usage: exe_memfd_target WORKDIR [solo]: solo, the parent alone without any memfd.
 * Prints "ready" once set up, then waits for WORKDIR/stop. Then the parent writes "XYZ" at
 * its position and creates WORKDIR/written; the child reads 2 bytes at its own position.
 * Each prints "parent|child exe=PATH ino=INODE ..." and the parent "done".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[4096];

static const char *at(const char *work, const char *name)
{
	snprintf(path, sizeof(path), "%s/%s", work, name);
	return path;
}

static void wait_for(const char *work, const char *name)
{
	while (access(at(work, name), F_OK))
		usleep(20000);
}

static const char *exe(void)
{
	static char link[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", link, sizeof(link) - 1);

	link[n < 0 ? 0 : n] = '\0';
	return link;
}

static unsigned long ino_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : (unsigned long)st.st_ino;
}

static void child(const char *work, pid_t parent, int ready)
{
	char name[64], buf[3] = "";
	int fd, i;

	close(10);
	for (i = 20; i <= 36; i++)
		close(i);
	snprintf(name, sizeof(name), "/proc/%d/fd/10", (int)parent);
	fd = open(name, O_RDONLY);
	if (fd < 0 || dup2(fd, 11) != 11 || lseek(11, 2, SEEK_SET) != 2)
		exit(2);
	close(fd);
	if (write(ready, "r", 1) != 1)
		exit(2);
	close(ready);
	wait_for(work, "written");
	if (read(11, buf, 2) != 2)
		exit(3);
	printf("child exe=%s ino=%lu read=%s acc=%d pos=%ld\n", exe(), ino_of(11), buf,
	       fcntl(11, F_GETFL) & O_ACCMODE, (long)lseek(11, 0, SEEK_CUR));
	exit(0);
}

static pid_t setup(const char *work)
{
	int fd, i, sync[2];
	pid_t pid;
	char c;

	fd = memfd_create("crfs-shared", 0);
	if (fd < 0 || write(fd, "hello", 5) != 5 || lseek(fd, 1, SEEK_SET) != 1 ||
	    dup2(fd, 10) != 10)
		exit(2);
	close(fd);
	for (i = 20; i <= 36; i++) {
		fd = memfd_create("crfs-many", 0);
		if (fd < 0 || dup2(fd, i) != i)
			exit(2);
		close(fd);
	}
	if (pipe(sync))
		exit(2);
	pid = fork();
	if (pid < 0)
		exit(2);
	if (!pid) {
		close(sync[0]);
		child(work, getppid(), sync[1]);
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) != 1)
		exit(2);
	close(sync[0]);
	return pid;
}

int main(int argc, char **argv)
{
	int solo = argc > 2 && !strcmp(argv[2], "solo");
	pid_t pid = 0;
	int status = -1;

	if (argc < 2)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!solo)
		pid = setup(argv[1]);
	printf("ready\n");
	wait_for(argv[1], "stop");
	if (solo) {
		printf("parent exe=%s\ndone\n", exe());
		return 0;
	}
	if (write(10, "XYZ", 3) != 3)
		return 3;
	close(open(at(argv[1], "written"), O_WRONLY | O_CREAT, 0644));
	printf("parent exe=%s ino=%lu pos=%ld\n", exe(), ino_of(10),
	       (long)lseek(10, 0, SEEK_CUR));
	waitpid(pid, &status, 0);
	printf("child status=%d\ndone\n", status);
	return 0;
}
