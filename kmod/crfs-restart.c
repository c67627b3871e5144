// SPDX-License-Identifier: GPL-2.0
/*
 * crfs-restart: become the process of a checkpoint image, through /dev/crfs.
 *
 *   crfs-restart [-d DEVICE] [-r FD] IMAGE
 *
 * Built static by `make -C kmod` (no dynamic loader, few mappings). It:
 *   1. turns address-space randomization off (personality ADDR_NO_RANDOMIZE) and
 *      re-executes itself once, so that its own layout is the same on every run;
 *   2. reads the vdso address of the image's mm (MM_CONTEXT) and moves its own
 *      [vvar] + [vdso] there with mremap (the kernel cannot map a vdso from a module:
 *      the restored program's libc holds pointers into it);
 *   3. opens DEVICE (/dev/crfs), checks CRFS_IOC_VERSION, and calls CRFS_IOC_RESTART.
 *
 * On success the ioctl does not come back here: this process is the restored program,
 * with the same pid, stdin, stdout and stderr; every other fd (the image, the device, FD)
 * is closed by the kernel. On failure it prints one line on stderr and, with -r, writes a
 * 128-byte report on FD (errno, err_offset, err_type, stage[16], reason[96];
 * little-endian, as crfs/kernel.py reads it), then exits with status 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include "crfs_ioctl.h"

#define HDR_MM_CONTEXT 404	/* CKPT_HDR_MM_CONTEXT */

struct report {
	int32_t err;
	uint64_t offset;
	uint32_t type;
	char stage[16];
	char reason[96];
} __attribute__((packed));

static int report_fd = -1;

static void fail(const char *stage, int err, const char *reason, uint64_t offset,
		 uint32_t type)
{
	struct report r = { .err = err, .offset = offset, .type = type };

	strncpy(r.stage, stage, sizeof(r.stage) - 1);
	strncpy(r.reason, reason ? reason : "", sizeof(r.reason) - 1);
	fprintf(stderr, "crfs-restart: %s: %s%s%s\n", stage, strerror(err),
		reason && *reason ? ": " : "", reason ? reason : "");
	if (report_fd >= 0 && write(report_fd, &r, sizeof(r)) != sizeof(r))
		perror("crfs-restart: report");
	exit(1);
}

/* The vdso of the image's first mm, 0 if none: the records are framed by {type, len}. */
static uint64_t image_vdso(int fd)
{
	uint32_t hdr[2];
	uint64_t vdso;
	off_t pos = 0;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_MM_CONTEXT) {
			if (pread(fd, &vdso, sizeof(vdso), pos + 8) != sizeof(vdso))
				return 0;
			return vdso;
		}
		pos += hdr[1];
	}
	return 0;	/* the kernel judges the image */
}

struct area {
	unsigned long start, end;
};

/* Our [vvar] and [vdso]; 0 if other mappings of ours lie in [lo, hi). */
static int own_maps(struct area *vvar, struct area *vdso, unsigned long lo,
		    unsigned long hi)
{
	char line[512], name[256];
	unsigned long start, end;
	int clash = 0;
	FILE *f;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		name[0] = '\0';
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &start, &end, name) < 2)
			continue;
		if (!strncmp(name, "[vvar", 5))
			*vvar = (struct area){ start, end };
		else if (!strcmp(name, "[vdso]"))
			*vdso = (struct area){ start, end };
		else if (start < hi && end > lo)
			clash = 1;
	}
	fclose(f);
	return clash ? -EBUSY : 0;
}

static void move(struct area *a, unsigned long to)
{
	void *p;

	if (a->start == to || a->end == a->start)
		return;
	p = mremap((void *)a->start, a->end - a->start, a->end - a->start,
		   MREMAP_MAYMOVE | MREMAP_FIXED, (void *)to);
	if (p == MAP_FAILED)
		fail("vdso", errno, "mremap of [vvar]/[vdso] failed", UINT64_MAX, 0);
	a->end = to + (a->end - a->start);
	a->start = to;
}

/* Move our [vvar] + [vdso] so that the vdso starts at @target. */
static void place_vdso(uint64_t target)
{
	struct area vvar = { 0, 0 }, vdso = { 0, 0 };
	unsigned long below, size, lo, hi;
	char why[96];
	void *tmp;

	own_maps(&vvar, &vdso, 0, 0);
	if (!target || !vdso.start || vdso.start == target)
		return;
	below = vvar.end == vdso.start ? vvar.end - vvar.start : 0;
	size = below + vdso.end - vdso.start;
	lo = target - below;
	hi = lo + size;
	if (target < below || own_maps(&vvar, &vdso, lo, hi)) {
		snprintf(why, sizeof(why), "image vdso %#" PRIx64 " collides with the restarter",
			 target);
		fail("vdso", EBUSY, why, UINT64_MAX, 0);
	}
	if (lo < vdso.end && hi > vvar.start) {
		/* overlapping moves: through a free area first */
		tmp = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (tmp == MAP_FAILED)
			fail("vdso", errno, "no room to move the vdso", UINT64_MAX, 0);
		move(&vdso, (unsigned long)tmp + below);
		if (below)
			move(&vvar, (unsigned long)tmp);
	}
	move(&vdso, target);
	if (below)
		move(&vvar, lo);
}

int main(int argc, char **argv)
{
	const char *device = "/dev/crfs";
	struct crfs_image_args args;
	int opt, dev, fd, persona;

	while ((opt = getopt(argc, argv, "d:r:")) != -1) {
		if (opt == 'd')
			device = optarg;
		else if (opt == 'r')
			report_fd = atoi(optarg);
		else
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;
	persona = personality(0xffffffff);
	if (persona != -1 && !(persona & ADDR_NO_RANDOMIZE) &&
	    personality(persona | ADDR_NO_RANDOMIZE) != -1) {
		execv("/proc/self/exe", argv);
		/* no re-exec: go on with this layout */
	}
	dev = open(device, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		fail("open-device", errno, device, UINT64_MAX, 0);
	opt = ioctl(dev, CRFS_IOC_VERSION);
	if (opt < 0)
		fail("version", errno, "not the crfs device", UINT64_MAX, 0);
	if (opt != CRFS_ABI_VERSION)
		fail("version", EPROTO, "another module ABI version", UINT64_MAX, 0);
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open-image", errno, argv[optind], UINT64_MAX, 0);
	place_vdso(image_vdso(fd));
	memset(&args, 0, sizeof(args));
	args.fd = fd;
	ioctl(dev, CRFS_IOC_RESTART, &args);
	/* only a failure comes back */
	fail("restart", errno, args.err_msg, args.err_offset, args.err_type);
usage:
	fprintf(stderr, "usage: crfs-restart [-d DEVICE] [-r FD] IMAGE\n");
	return 2;
}
