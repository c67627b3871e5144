/* A shared anonymous mapping (MAP_SHARED | MAP_ANONYMOUS) of 16 pages, 10 of them written. */
#include <sys/mman.h>
#include "ckpt_common.h"

#define PAGES 16
#define WRITTEN 10

int main(void)
{
	unsigned char *map = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return 1;
	for (unsigned long i = 0; i < WRITTEN * 4096; i++)
		map[i] = pattern(i, 4);
	ready("map=%lx size=%x written=%x", (unsigned long)map, PAGES * 4096, WRITTEN * 4096);
	count_forever();
}
