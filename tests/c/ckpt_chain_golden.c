/* The crfs extension records of incremental ckpt images, from C structs:
 * CRFS_HDR_PARENT (8011) and CRFS_HDR_PARENT_PAGES (8012) with two runs, written back to
 * back to stdout (docs/format-ckpt.md, crfs/formats/ckpt.py). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct ckpt_hdr {
	uint32_t type;
	uint32_t len;
} __attribute__((aligned(8)));

struct crfs_hdr_parent {
	struct ckpt_hdr h;
	uint64_t size;
	uint8_t sha256[32];
	uint32_t tracking;
} __attribute__((aligned(8)));

struct crfs_page_run {
	uint64_t start;
	uint64_t npages;
};

struct crfs_hdr_parent_pages {
	struct ckpt_hdr h;
	uint32_t nr_runs;
	struct crfs_page_run runs[];
} __attribute__((aligned(8)));

int main(void)
{
	struct crfs_hdr_parent parent;
	struct {
		struct crfs_hdr_parent_pages head;
		struct crfs_page_run runs[2];
	} pages;
	int i;

	memset(&parent, 0, sizeof(parent));
	parent.h.type = 8011;
	parent.h.len = sizeof(parent);
	parent.size = 12345;
	for (i = 0; i < 32; i++)
		parent.sha256[i] = (uint8_t)i;
	parent.tracking = 2;
	memset(&pages, 0, sizeof(pages));
	pages.head.h.type = 8012;
	pages.head.h.len = sizeof(pages);
	pages.head.nr_runs = 2;
	pages.runs[0].start = 4096;
	pages.runs[0].npages = 3;
	pages.runs[1].start = 65536;
	pages.runs[1].npages = 1;
	fwrite(&parent, sizeof(parent), 1, stdout);
	fwrite(&pages, sizeof(pages), 1, stdout);
	return 0;
}
