/* Golden bytes of crfs's CRFS_HDR_FILE_ID record (docs/format-ckpt.md, crfs extensions):
 * the identity of a mapped file, after its FILE_NAME in a FILE object. Writes the record
 * to argv[1] and prints the values and sizes as JSON. Built -m32 and -m64: the layout
 * must be the same. */
#include <stdint.h>
#include <stdio.h>

#define CRFS_HDR_FILE_ID 8010

struct ckpt_hdr { uint32_t type; uint32_t len; } __attribute__((aligned(8)));

struct crfs_hdr_file_id {
	struct ckpt_hdr h;
	uint64_t dev;		/* st_dev as stat(2) gives it */
	uint64_t ino;
	uint64_t size;
	int64_t mtime_ns;
} __attribute__((aligned(8)));

_Static_assert(sizeof(struct crfs_hdr_file_id) == 40, "FILE_ID");

int main(int argc, char **argv)
{
	/* major 259 minor 65537 (new_encode_dev), an inode past 2^32, a size past 4 GiB,
	 * an mtime before 1970 */
	struct crfs_hdr_file_id rec = {
		.h = { .type = CRFS_HDR_FILE_ID, .len = sizeof(rec) },
		.dev = (259u << 8) | (65537u & 0xff) | ((65537u & ~0xffu) << 12),
		.ino = (1ULL << 40) + 5,
		.size = (1ULL << 33) + 7,
		.mtime_ns = -1234567890123LL,
	};
	FILE *f;

	if (argc != 2)
		return 2;
	f = fopen(argv[1], "wb");
	if (!f || fwrite(&rec, sizeof(rec), 1, f) != 1 || fclose(f))
		return 1;
	printf("{\"sizeof\": %zu, \"type\": %u, \"dev\": %llu, \"ino\": %llu, \"size\": %llu, "
	       "\"mtime_ns\": %lld, \"size_offset\": %zu, \"mtime_offset\": %zu}\n",
	       sizeof(rec), rec.h.type, (unsigned long long)rec.dev,
	       (unsigned long long)rec.ino, (unsigned long long)rec.size,
	       (long long)rec.mtime_ns, (size_t)((char *)&rec.size - (char *)&rec),
	       (size_t)((char *)&rec.mtime_ns - (char *)&rec));
	return 0;
}
