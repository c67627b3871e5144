/* A process tree sharing MAP_SHARED|MAP_ANONYMOUS memory, as every forking zdtm test does:
 * tests/test_kmod_guest.py (step "shm_tree") checkpoints it with `crfs checkpoint --tree`
 * and restarts it with crfs-restart.
 *
 *   shm_tree_target DIR
 *
 * The parent maps 4 shared anonymous pages: page 0 holds two counters, pages 1-3 a byte
 * pattern, then forks. Each tick (~10 ms) the child increments its counter and prints
 *   child N pid=P seen=T pattern=ok
 * with T the parent's counter as the child reads it; the parent increments its own and
 * prints
 *   parent N pid=P seen=C pattern=ok
 * with C the child's counter. Both keep both ends of a pipe made before the fork (as
 * zdtm's task_waiter does): one FILE object per end, shared, of one pipe, shared. Once
 * DIR/stop exists the parent sets the stop word, the child writes its last N into the
 * pipe and ends (status 5), and the parent prints
 *   parent done seen=C status=S piped=N
 * then exits with status 3. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

#define PAGES 4
#define PAGE 4096

struct shared {
	volatile unsigned long child;	/* the child's counter */
	volatile unsigned long parent;	/* the parent's counter */
	volatile int stop;
};

static const char *ok(const unsigned char *mem)
{
	return pattern_ok(mem + PAGE, (PAGES - 1) * PAGE, 7) ? "ok" : "BAD";
}

static void tick(void)
{
	struct timespec step = {0, 10 * 1000 * 1000};

	nanosleep(&step, NULL);
}

static int child_loop(unsigned char *mem, int wfd)
{
	struct shared *s = (struct shared *)mem;
	unsigned long n = 0;

	while (!s->stop) {
		s->child = ++n;
		printf("child %lu pid=%d seen=%lu pattern=%s\n", n, (int)getpid(), s->parent,
		       ok(mem));
		tick();
	}
	if (write(wfd, &n, sizeof(n)) != sizeof(n))
		return 6;
	return 5;
}

int main(int argc, char **argv)
{
	char stop_path[4096];
	unsigned char *mem;
	struct shared *s;
	unsigned long n = 0, piped = 0;
	int status, fds[2];
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: shm_tree_target DIR\n");
		return 2;
	}
	snprintf(stop_path, sizeof(stop_path), "%s/stop", argv[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	for (unsigned long i = 0; i < (PAGES - 1) * PAGE; i++)
		mem[PAGE + i] = byte_at(i, 7);
	s = (struct shared *)mem;
	if (pipe(fds)) {
		perror("pipe");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0)
		return child_loop(mem, fds[1]);
	while (access(stop_path, F_OK)) {
		s->parent = ++n;
		printf("parent %lu pid=%d seen=%lu pattern=%s\n", n, (int)getpid(), s->child,
		       ok(mem));
		tick();
	}
	s->stop = 1;
	pid = waitpid(-1, &status, 0);
	if (read(fds[0], &piped, sizeof(piped)) != sizeof(piped))
		piped = 0;
	printf("parent done seen=%lu status=%d piped=%lu\n", s->child,
	       pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, piped);
	return 3;
}
