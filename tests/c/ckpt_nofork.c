/* Memory a fork does not copy-on-write, for snapshot checkpoints: 16 pages each of
 * MADV_WIPEONFORK (empty in a child), MADV_DONTFORK (not in a child) and MAP_SHARED
 * anonymous memory, each page filled with its area's tag and its index.
 * Prints "ready wipe=<hex> dontfork=<hex> shared=<hex> pages=10", then sleeps. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16
#define PAGE 4096

static unsigned char *area(int shared, int advice, int tag)
{
	unsigned char *p = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE,
				(shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	int i;

	if (p == MAP_FAILED || (advice && madvise(p, PAGES * PAGE, advice)))
		return NULL;
	for (i = 0; i < PAGES; i++)
		memset(p + i * PAGE, tag + i, PAGE);
	return p;
}

int main(void)
{
	unsigned char *wipe = area(0, MADV_WIPEONFORK, 0x10);
	unsigned char *dontfork = area(0, MADV_DONTFORK, 0x40);
	unsigned char *shared = area(1, 0, 0x70);

	if (!wipe || !dontfork || !shared)
		return 1;
	printf("ready wipe=%lx dontfork=%lx shared=%lx pages=%x\n", (unsigned long)wipe,
	       (unsigned long)dontfork, (unsigned long)shared, PAGES);
	fflush(stdout);
	for (;;)
		pause();
}
