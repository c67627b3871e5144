/* The byte pattern the restore targets keep in memory and check on every tick: a restore
 * that loses or moves a page shows as a BAD check. */
#ifndef PATTERN_H
#define PATTERN_H

static unsigned char byte_at(unsigned long i, unsigned int seed)
{
	return (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

static int pattern_ok(const unsigned char *p, unsigned long n, unsigned int seed)
{
	for (unsigned long i = 0; i < n; i++)
		if (p[i] != byte_at(i, seed))
			return 0;
	return 1;
}

#endif
