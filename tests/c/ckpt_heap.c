/* A heap filled with a known pattern: argv[1] MiB of malloc'd memory, every byte written. */
#include "ckpt_common.h"

int main(int argc, char **argv)
{
	unsigned long size = (argc > 1 ? strtoul(argv[1], NULL, 0) : 4) << 20;
	unsigned char *heap = malloc(size);
	if (!heap)
		return 1;
	for (unsigned long i = 0; i < size; i++)
		heap[i] = pattern(i, 1);
	ready("heap=%lx size=%lx", (unsigned long)heap, size);
	count_forever();
}
