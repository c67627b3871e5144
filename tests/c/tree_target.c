/* A process tree that tests/test_kmod_guest.py checkpoints (crfs checkpoint --tree) and
 * restarts with crfs-restart: a parent and one forked child, each with its own counter.
 *
 *   tree_target LIMIT [setsid|setpgid]
 *
 * With setsid (setpgid), the child first makes a session (a process group) of its own.
 *
 * Both count, one line per tick (~10 ms):
 *   parent N pid=P ppid=Q heap=ok      child N pid=P ppid=Q heap=ok
 * where heap checks a malloc'ed pattern of each process's own (different in the two).
 * The child exits with status 5 at tick LIMIT; the parent, at tick LIMIT, waits for any
 * child (its pid changes in a restart) and prints
 *   parent reaped pid=C status=S
 * then exits with status 3 (4 if wait failed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

#define HEAP_BYTES (16 * 1024)

static void count(const char *who, unsigned int seed, unsigned long limit)
{
	struct timespec step = {0, 10 * 1000 * 1000};
	unsigned long counter = 0;
	unsigned char *heap = malloc(HEAP_BYTES);

	for (unsigned long i = 0; i < HEAP_BYTES; i++)
		heap[i] = byte_at(i, seed);
	while (counter < limit) {
		counter++;
		nanosleep(&step, NULL);
		printf("%s %lu pid=%d ppid=%d heap=%s\n", who, counter, (int)getpid(),
		       (int)getppid(), pattern_ok(heap, HEAP_BYTES, seed) ? "ok" : "BAD");
	}
}

int main(int argc, char **argv)
{
	unsigned long limit;
	int status;
	pid_t pid;

	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: tree_target LIMIT [setsid|setpgid]\n");
		return 2;
	}
	limit = strtoul(argv[1], NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		/* the child in a session or a process group of its own */
		if (argc == 3 && !strcmp(argv[2], "setsid") && setsid() < 0)
			return 6;
		if (argc == 3 && !strcmp(argv[2], "setpgid") && setpgid(0, 0))
			return 6;
		count("child", 11, limit);
		return 5;
	}
	count("parent", 3, limit);
	pid = wait(&status);
	if (pid < 0) {
		perror("wait");
		return 4;
	}
	printf("parent reaped pid=%d status=%d\n", (int)pid,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 3;
}
