/* A fork tree. argv[1] = "2": parent and one child; "4": parent -> child 1 -> grandchild,
 * and parent -> child 2. Each process writes 64 KiB of its own pattern (tag = its place in
 * the depth-first order, 1..n) into a heap buffer; the parent prints the pids once all
 * are set up. */
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "ckpt_common.h"

#define SIZE (64 * 1024)

static unsigned char *buffer;
static int ready_pipe[2];

static void fill(unsigned tag)
{
	for (unsigned long i = 0; i < SIZE; i++)
		buffer[i] = pattern(i, tag);
}

/* Child `tag`: fill, report its pid to the parent, count. Dies with the parent. */
static pid_t spawn(unsigned tag, int grandchild_tag)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fill(tag);
	if (grandchild_tag)
		spawn(grandchild_tag, 0);
	int me = getpid();
	if (write(ready_pipe[1], &me, sizeof me) != sizeof me)
		_exit(1);
	count_forever();
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2;
	buffer = malloc(SIZE);
	if (!buffer || pipe(ready_pipe) || (n != 2 && n != 4))
		return 1;
	fill(1);
	spawn(2, n == 4 ? 3 : 0);
	if (n == 4)
		spawn(4, 0);
	for (int i = 1; i < n; i++) {
		int pid;
		if (read(ready_pipe[0], &pid, sizeof pid) != sizeof pid)
			return 1;
	}
	ready("buffer=%lx size=%x", (unsigned long)buffer, SIZE);
	count_forever();
}
