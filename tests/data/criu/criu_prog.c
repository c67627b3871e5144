/* The programs tests/data/criu/make-fixtures dumps with `criu dump` (see README there).
 *
 *   criu_prog threads   two threads: main waits in pthread_join, "worker" in pause()
 *   criu_prog fork      a parent and its forked child, each in pause(), sharing 4 pages
 *                       of MAP_SHARED|MAP_ANONYMOUS memory
 *
 * Every process fills known patterns and prints where they are, then "ready":
 *   proc PID global=0xADDR heap=0xADDR heap_len=N seed=S
 *   thread PID TID fs_base=0xADDR tls=0xADDR
 * g_words[i] = seed << 32 | i (initialized data: 8 KiB), g_message (a string), heap[i] =
 * 0xC0DE000000000000 | seed << 32 | i over 64 KiB of malloc'd memory. The shared pages
 * (fork): word i of page 0 and 2 is 0x5AED000000000000 | 2 << 32 | i (the parent's, before
 * the fork), of page 1 0x5AED000000000000 | 3 << 32 | i (the child's, after); page 3 is
 * never touched. The parent prints
 *   shared PID shared=0xADDR shared_len=16384 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HEAP_WORDS (64 * 1024 / 8)

uint64_t g_words[1024] = {1};
char g_message[64] = "crfs criu fixture: global message";
uint64_t *g_heap;
__thread uint64_t t_marker = 0x7715;

static void fill(uint64_t seed)
{
	unsigned long i;

	for (i = 0; i < 1024; i++)
		g_words[i] = seed << 32 | i;
	g_heap = malloc(HEAP_WORDS * 8);
	for (i = 0; i < HEAP_WORDS; i++)
		g_heap[i] = 0xC0DE000000000000ULL | seed << 32 | i;
	printf("proc %d global=%p heap=%p heap_len=%lu seed=%lu\n", getpid(), (void *)g_words,
	       (void *)g_heap, (unsigned long)HEAP_WORDS * 8, (unsigned long)seed);
}

static void say_thread(void)
{
	unsigned long fs;

	syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
	printf("thread %d %ld fs_base=%#lx tls=%p\n", getpid(), (long)syscall(SYS_gettid), fs,
	       (void *)&t_marker);
	fflush(stdout);
}

static void *worker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "worker");
	t_marker = 0xbeef;
	say_thread();
	for (;;)
		pause();
	return NULL;
}

static int run_threads(void)
{
	pthread_t thread;

	fill(1);
	t_marker = 0xfeed;
	say_thread();
	pthread_create(&thread, NULL, worker, NULL);
	usleep(200000);
	printf("ready\n");
	fflush(stdout);
	pthread_join(thread, NULL);
	return 0;
}

#define SHARED_WORDS (4 * 4096 / 8)

static void fill_shared_page(uint64_t *shared, int page, uint64_t seed)
{
	int i;

	for (i = 0; i < 512; i++)
		shared[page * 512 + i] = 0x5AED000000000000ULL | seed << 32 | (uint64_t)i;
}

static int run_fork(void)
{
	uint64_t *shared;
	pid_t child;

	shared = mmap(NULL, SHARED_WORDS * 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (shared == MAP_FAILED)
		return perror("mmap"), 1;
	fill_shared_page(shared, 0, 2);
	fill_shared_page(shared, 2, 2);
	printf("shared %d shared=%p shared_len=%d\n", getpid(), (void *)shared, SHARED_WORDS * 8);
	fill(2);
	say_thread();
	fflush(stdout);
	child = fork();
	if (child == 0) {
		free(g_heap);
		fill(3);
		fill_shared_page(shared, 1, 3);
		prctl(PR_SET_NAME, "fork-child");
		say_thread();
		for (;;)
			pause();
	}
	usleep(200000);
	printf("ready child=%d\n", child);
	fflush(stdout);
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "fork"))
		return run_fork();
	return run_threads();
}
