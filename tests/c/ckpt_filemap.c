/* A private file mapping of argv[1] (8 pages) of which pages 1 and 5 are modified. */
#include <fcntl.h>
#include <sys/mman.h>
#include "ckpt_common.h"

#define PAGES 8

int main(int argc, char **argv)
{
	int fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		return 1;
	unsigned char *map = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return 1;
	volatile unsigned char sum = 0;
	for (int page = 0; page < PAGES; page++)     /* read every page: clean, present */
		sum += map[page * 4096];
	for (int i = 0; i < 4096; i++) {
		map[1 * 4096 + i] = pattern(i, 2);
		map[5 * 4096 + i] = pattern(i, 3);
	}
	ready("map=%lx size=%x", (unsigned long)map, PAGES * 4096);
	count_forever();
}
