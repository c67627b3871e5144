/* The program of the guest step "lazy" (tests/guest_lazy.py): a dirty heap restarted lazily.
 *
 *   lazy_target WORKDIR MODE MIB
 *
 * Maps MIB MiB of anonymous memory and writes a pattern on every page but every 16th (a
 * hole: never touched, so not in the image: zeros), prints "ready", then waits for its
 * restart: until its parent is another process (the restarter) or WORKDIR/go exists,
 * polling every millisecond. Then, at once, MODE:
 *   check    every byte of the heap compared: "heap=ok" or "heap=bad page N";
 *   threads  two threads compare the two halves at the same time: "threads=ok";
 *   madvise  in the last 8 MiB, before looking at anything: [end-8M, end-6M) MADV_DONTNEED,
 *            [end-6M, end-4M) munmap, [end-4M, end-2M) mremap'ed elsewhere; it prints
 *            how many pages of the first and third ranges were resident just before
 *            (mincore: "before dontneed=N remap=N"), then checks: zeros in the first,
 *            the second unmapped, the pattern at the new place of the third and nothing
 *            at its old one, the rest intact: "madvise=ok" or what differs;
 *   idle     waits for WORKDIR/stop without touching the heap, then checks it as check;
 *   fork     forks at once; the child forks a grandchild at once; each of the three
 *            checks every byte ("child heap=ok", "grandchild heap=ok", "heap=ok"), the
 *            parents after their child ended well: "fork=ok";
 *   forkidle forks at once, the child says "child PID"; both then do as idle;
 *   forks300 forks 300 children one after the other, each exiting at once: "forks=ok",
 *            then checks as check;
 *   tree     a tree, made before "ready": the program forks two children, the first a
 *            grandchild; each rewrites its heap with a pattern of its own (process N of
 *            0-3: the program 0, the children 1 and 2, the grandchild 3), and prints
 *            "tree N pid PID". After the restart the program creates WORKDIR/go, which
 *            the others wait for; each checks every byte of its own heap ("tree N
 *            heap=ok"), each parent reaps its children, and the program says "tree=ok"
 *            if every process found its heap intact;
 *   treeidle as tree, but every process waits for WORKDIR/stop before it looks;
 *   treegone as treeidle, but the others end at once after the restart, each reaped by
 *            its parent: only the program looks ("tree 0 heap=ok").
 * Then "done" and exit status 3. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024)

static unsigned char *heap;
static size_t pages;
static const char *work;

static int hole(size_t i)
{
	return i % 16 == 15;
}

static unsigned long seed;		/* tree: the process's own pattern */

static unsigned long word(size_t i, size_t k)
{
	return (i * 2654435761UL) ^ (k * 40503UL) ^ 0x5a5a5a5a5a5a5a5aUL ^ (seed << 56);
}

static void fill(size_t i)
{
	unsigned long *p = (unsigned long *)(heap + i * PAGE);
	size_t k;

	for (k = 0; k < PAGE / sizeof(*p); k++)
		p[k] = word(i, k);
}

/* Page @i (its content now at @at) as written, or zeros for a hole: 0 if so. */
static int page_bad(size_t i, const unsigned char *at)
{
	const unsigned long *p = (const unsigned long *)at;
	size_t k;

	for (k = 0; k < PAGE / sizeof(*p); k++)
		if (p[k] != (hole(i) ? 0 : word(i, k)))
			return 1;
	return 0;
}

/* The first bad page of [from, to), or -1. */
static long check(size_t from, size_t to)
{
	size_t i;

	for (i = from; i < to; i++)
		if (page_bad(i, heap + i * PAGE))
			return (long)i;
	return -1;
}

static int exists(const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", work, name);
	return stat(path, &st) == 0;
}

static void *half(void *arg)
{
	size_t h = (size_t)arg;

	return (void *)check(h * pages / 2, (h + 1) * pages / 2);
}

static int threads(void)
{
	pthread_t t[2];
	void *bad[2];
	size_t h;

	for (h = 0; h < 2; h++)
		if (pthread_create(&t[h], NULL, half, (void *)h))
			return 1;
	for (h = 0; h < 2; h++)
		pthread_join(t[h], &bad[h]);
	return (long)bad[0] != -1 || (long)bad[1] != -1;
}

static size_t resident(unsigned char *at, size_t len)
{
	unsigned char vec[2 * MIB / PAGE];
	size_t i, n = 0;

	if (len > sizeof(vec) * PAGE || mincore(at, len, vec))
		return (size_t)-1;
	for (i = 0; i < len / PAGE; i++)
		n += vec[i] & 1;
	return n;
}

static int zeros(const unsigned char *at, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (at[i])
			return 0;
	return 1;
}

static void madvise_mode(void)
{
	unsigned char *end = heap + pages * PAGE, *r1 = end - 8 * MIB, *r2 = end - 6 * MIB;
	unsigned char *r3 = end - 4 * MIB, *to, vec;
	size_t d, m, i, base = pages - 4 * MIB / PAGE;
	int ok = 1;

	d = resident(r1, 2 * MIB);
	m = resident(r3, 2 * MIB);
	to = mmap(NULL, 2 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(r1, 2 * MIB, MADV_DONTNEED);
	munmap(r2, 2 * MIB);
	to = mremap(r3, 2 * MIB, 2 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	printf("before dontneed=%zu remap=%zu\n", d, m);
	if (!zeros(r1, 2 * MIB))
		ok = 0, printf("dontneed: not zeros\n");
	if (mincore(r2, PAGE, &vec) == 0)
		ok = 0, printf("munmap: still mapped\n");
	if (to == MAP_FAILED || mincore(r3, PAGE, &vec) == 0)
		ok = 0, printf("mremap: failed or old place mapped\n");
	for (i = 0; to != MAP_FAILED && i < 2 * MIB / PAGE; i++)
		if (page_bad(base + i, to + i * PAGE)) {
			ok = 0, printf("mremap: page %zu bad\n", i);
			break;
		}
	if (check(0, pages - 8 * MIB / PAGE) != -1 || check(pages - 2 * MIB / PAGE, pages) != -1)
		ok = 0, printf("rest: bad\n");
	printf("madvise=%s\n", ok ? "ok" : "bad");
}

/* Every byte checked, printed as WHO heap=...: 0 if ok. */
static int check_as(const char *who)
{
	long bad = check(0, pages);

	if (bad < 0)
		printf("%sheap=ok\n", who);
	else
		printf("%sheap=bad page %ld\n", who, bad);
	return bad >= 0;
}

/* A child's exit status: 0 if it exited 0. */
static int reaped(pid_t pid)
{
	int status;

	return pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	       WEXITSTATUS(status);
}

static void fork_mode(void)
{
	pid_t child = fork(), grandchild;
	int bad;

	if (child == 0) {
		grandchild = fork();
		if (grandchild == 0)
			_exit(check_as("grandchild "));
		bad = check_as("child ");
		_exit(bad | reaped(grandchild));
	}
	bad = check_as("");
	printf("fork=%s\n", bad | reaped(child) ? "bad" : "ok");
}

/* Tree process @n: its own pattern written, said, told on @ready; the pipe closed. */
static void tree_fill(unsigned long n, int ready[2])
{
	size_t i;

	seed = n;
	for (i = 0; i < pages; i++)
		if (!hole(i))
			fill(i);
	printf("tree %lu pid %d\n", n, getpid());
	if (write(ready[1], "r", 1) != 1)
		_exit(2);
	close(ready[0]);
	close(ready[1]);
}

/* The tree made (tree, treeidle): the program's number, 0, or its child's. */
static unsigned long tree_make(pid_t kids[2])
{
	int ready[2];
	char c;
	int got;

	kids[0] = kids[1] = -1;
	if (pipe(ready))
		exit(2);
	kids[0] = fork();
	if (kids[0] == 0) {
		kids[0] = fork();	/* the grandchild */
		if (kids[0] == 0) {
			kids[0] = -1;
			tree_fill(3, ready);
			return 3;
		}
		tree_fill(1, ready);
		return 1;
	}
	kids[1] = fork();
	if (kids[1] == 0) {
		kids[0] = kids[1] = -1;
		tree_fill(2, ready);
		return 2;
	}
	close(ready[1]);
	for (got = 0; got < 3; got++)	/* a byte from each */
		if (read(ready[0], &c, 1) != 1)
			exit(2);
	close(ready[0]);
	seed = 0;
	return 0;
}

/* After the restart: process @n checks its heap, reaps its children; exit status. */
static int tree_check(unsigned long n, const char *mode, pid_t kids[2])
{
	char who[16];
	int bad = 0, k;

	if (n == 0) {
		FILE *f;
		char path[4096];

		snprintf(path, sizeof(path), "%s/go", work);
		f = fopen(path, "w");
		if (f)
			fclose(f);
	}
	while (!exists("go"))
		usleep(1000);
	if (!strcmp(mode, "treegone")) {	/* the others end at once, reaped */
		for (k = 0; k < 2; k++)
			bad |= kids[k] > 0 && reaped(kids[k]);
		kids[0] = kids[1] = -1;
		if (n)
			_exit(bad);
	}
	while (strcmp(mode, "tree") && !exists("stop"))
		usleep(10000);
	snprintf(who, sizeof(who), "tree %lu ", n);
	bad |= check_as(who);
	for (k = 0; k < 2; k++)
		bad |= kids[k] > 0 && reaped(kids[k]);
	if (n == 0)
		printf("tree=%s\n", bad ? "bad" : "ok");
	return bad;
}

int main(int argc, char **argv)
{
	pid_t parent = getppid();
	const char *mode;
	size_t i;
	long bad;

	if (argc != 4 || atoi(argv[3]) < 16)
		return 2;
	work = argv[1];
	mode = argv[2];
	pages = (size_t)atoi(argv[3]) * MIB / PAGE;
	heap = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	if (heap == MAP_FAILED)
		return 2;
	for (i = 0; i < pages; i++)
		if (!hole(i))
			fill(i);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strncmp(mode, "tree", 4)) {
		pid_t kids[2];
		unsigned long n = tree_make(kids);

		if (n == 0)
			printf("ready %d\n", getpid());
		while (n == 0 && getppid() == parent && !exists("go"))
			usleep(1000);
		bad = tree_check(n, mode, kids);
		if (n)
			_exit(bad);
		printf("done\n");
		return 3;
	}
	printf("ready %d\n", getpid());
	while (getppid() == parent && !exists("go"))
		usleep(1000);
	if (!strcmp(mode, "madvise")) {
		madvise_mode();
	} else if (!strcmp(mode, "fork")) {
		fork_mode();
	} else if (!strcmp(mode, "forks300")) {
		for (i = 0; i < 300; i++) {
			pid_t pid = fork();

			if (pid == 0)
				_exit(0);
			if (reaped(pid))
				break;
		}
		printf("forks=%s\n", i == 300 ? "ok" : "bad");
		check_as("");
	} else if (!strcmp(mode, "threads")) {
		printf("threads=%s\n", threads() ? "bad" : "ok");
	} else {
		if (!strcmp(mode, "forkidle") && fork() == 0)
			printf("child %d\n", getpid());
		while (strcmp(mode, "check") && !exists("stop"))
			usleep(10000);
		bad = check(0, pages);
		if (bad < 0)
			printf("heap=ok\n");
		else
			printf("heap=bad page %ld\n", bad);
	}
	printf("done\n");
	return 3;
}
