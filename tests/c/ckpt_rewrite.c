/* Rewrites a pattern in a loop, for snapshot checkpoints: THREADS threads (1 by default)
 * each own PAGES pages of one buffer and write their generation number into every word
 * of page 0, 1, ... in turn, publishing (generation, next page) in progress[] before each
 * page. An image of one instant shows, for each thread t at its progress (g, i): pages
 * below i hold g, the others g - 1 (or 0 in the first round); memory written during the
 * checkpoint would break that. SIGCHLD is counted (it must stay 0).
 * Prints "ready buf=<hex> progress=<hex> sigchld=<hex> pages=<hex> threads=<hex>". */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_THREADS 8
#define WORDS (4096 / 8)

static long pages = 256;
static volatile uint64_t *buf;
static volatile uint64_t progress[MAX_THREADS][2];
static volatile uint64_t sigchld;

static void on_sigchld(int sig)
{
	(void)sig;
	sigchld++;
}

static void *rewrite(void *arg)
{
	long t = (long)arg, i, w;
	volatile uint64_t *mine = buf + t * pages * WORDS;
	uint64_t g;

	for (g = 1;; g++) {
		for (i = 0; i < pages; i++) {
			progress[t][0] = g;
			progress[t][1] = i;
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			for (w = 0; w < WORDS; w++)
				mine[i * WORDS + w] = g;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? strtol(argv[1], NULL, 0) : 1, t;
	pthread_t tid;

	if (argc > 2)
		pages = strtol(argv[2], NULL, 0);
	if (threads < 1 || threads > MAX_THREADS)
		return 1;
	signal(SIGCHLD, on_sigchld);
	buf = mmap(NULL, threads * pages * 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	printf("ready buf=%lx progress=%lx sigchld=%lx pages=%lx threads=%lx\n",
	       (unsigned long)buf, (unsigned long)progress, (unsigned long)&sigchld,
	       pages, threads);
	fflush(stdout);
	for (t = 1; t < threads; t++)
		pthread_create(&tid, NULL, rewrite, (void *)t);
	rewrite(0);
	return 0;
}
