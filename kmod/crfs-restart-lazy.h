/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs-restart --lazy: the page server, included by crfs-restart.c.
 *
 * The restarter forks the process to restore (with its image pid when the kernel lets it,
 * else a new one) and stays as its parent. The child makes a userfaultfd before RESTART
 * (it is bound to the child's mm, which the restore keeps) and passes it over a socketpair
 * (SCM_RIGHTS), then calls RESTART with CRFS_RESTART_LAZY. The module maps the image's
 * memory but leaves the pages of the private writable anonymous VMAs out, and the child,
 * restored, waits in the kernel before its first instruction. Its report pipe reaches EOF:
 * the parent asks the module for the ranges (CRFS_LAZY_RANGES), registers each VMA
 * (UFFDIO_REGISTER_MODE_MISSING), says CRFS_LAZY_GO, reports "restored", then serves:
 *   - a fault first: its page and the next ones still to come (256 KiB at most) copied
 *     from the image (UFFDIO_COPY from the image mapped here, read-only, or pread), or a
 *     zero page (UFFDIO_ZEROPAGE) where the image has none or the program dropped it;
 *   - between faults, the rest in address order, up to 4 MiB a UFFDIO_COPY;
 *   - madvise(MADV_DONTNEED/REMOVE) and munmap of a range (UFFD_EVENT_REMOVE, _UNMAP)
 *     drop its pages still to come (a later touch gets zeros, as anonymous memory does);
 *     mremap (UFFD_EVENT_REMAP) moves them with the range.
 * When every page is in: CRFS_LAZY_DONE, a second report "resident" on -r FD (stage
 * "resident", reason "pid N: P pages, F on fault"), the userfaultfd is closed (which
 * unregisters the ranges: untouched holes then fill with zeros as usual) with the image
 * and the device, and the restarter relays the exit status as without --lazy.
 * If the server dies, the module kills the program before the userfaultfd goes away.
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/stat.h>

#define LAZY_BATCH	1024		/* pages a UFFDIO_COPY while streaming (4 MiB) */
#define LAZY_AROUND	64		/* pages a fault brings in, from its own on (256 KiB) */
#define PAGE		4096UL
#define LAZY_MSGS	64		/* uffd messages a read */

enum { PAGE_PENDING, PAGE_IN, PAGE_DROPPED };

struct lazy_page {
	uint64_t addr;
	int64_t pos;
	int state;
};

static int lazy;			/* --lazy */
static struct lazy_page *lazy_pages;
static size_t nr_lazy, lazy_left, lazy_faulted, lazy_cursor;
static struct crfs_lazy_range *lazy_ranges;
static uint32_t nr_lazy_ranges;
static char *lazy_buf;
static const char *lazy_map;		/* the image, mapped in this process only */
static off_t lazy_size;
static int lazy_uffd = -1, lazy_image = -1;
#define LAZY_STALLED	4096
static uint64_t lazy_stalled[LAZY_STALLED];	/* faults to serve */
static int nr_stalled;

/* The child: a userfaultfd of its mm, to the server. */
static void lazy_send_uffd(int sock)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "u", .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int uffd;

	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 && errno == EPERM)
		fail("lazy", EPERM, "userfaultfd refused: as non-root, --lazy needs sysctl "
		     "vm.unprivileged_userfaultfd=1", UINT64_MAX, 0);
	if (uffd < 0)
		fail("lazy", errno, "userfaultfd", UINT64_MAX, 0);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	if (sendmsg(sock, &msg, 0) != 1)
		fail("lazy", errno, "cannot pass the userfaultfd on", UINT64_MAX, 0);
	close(uffd);
}

static int lazy_recv_uffd(int sock)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 }, byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int by_addr(const void *a, const void *b)
{
	const struct lazy_page *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* The first page at or above @addr. */
static size_t lazy_lower(uint64_t addr)
{
	size_t lo = 0, hi = nr_lazy, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (lazy_pages[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The ranges from the module, the pages to bring in, sorted by address. */
static int lazy_plan(int dev, pid_t pid)
{
	struct crfs_lazy_args a = { .pid = pid, .op = CRFS_LAZY_RANGES };
	uint32_t i;
	uint64_t k;

	if (ioctl(dev, CRFS_IOC_LAZY, &a))
		return -errno;
	lazy_ranges = calloc(a.nr_ranges + 1, sizeof(*lazy_ranges));
	if (!lazy_ranges)
		return -ENOMEM;
	a.ranges = (uintptr_t)lazy_ranges;
	if (ioctl(dev, CRFS_IOC_LAZY, &a))
		return -errno;
	nr_lazy_ranges = a.nr_ranges;
	for (i = 0; i < nr_lazy_ranges; i++)
		if (lazy_ranges[i].pos >= 0)
			nr_lazy += lazy_ranges[i].len / PAGE;
	lazy_pages = calloc(nr_lazy + 1, sizeof(*lazy_pages));
	lazy_buf = aligned_alloc(PAGE, LAZY_BATCH * PAGE);
	if (!lazy_pages || !lazy_buf)
		return -ENOMEM;
	nr_lazy = 0;
	for (i = 0; i < nr_lazy_ranges; i++)
		for (k = 0; lazy_ranges[i].pos >= 0 && k < lazy_ranges[i].len / PAGE; k++)
			lazy_pages[nr_lazy++] = (struct lazy_page){
				.addr = lazy_ranges[i].addr + k * PAGE,
				.pos = lazy_ranges[i].pos + (int64_t)(k * PAGE) };
	qsort(lazy_pages, nr_lazy, sizeof(*lazy_pages), by_addr);
	lazy_left = nr_lazy;
	return 0;
}

/*
 * The userfaultfd's API, every VMA registered, then GO. For the tests of the module's
 * refusals only (tests/guest_lazy.py), $CRFS_LAZY_TEST makes the server misbehave here:
 * "exit" dies before GO, "late" says GO after 3 s, "unregistered" says GO without
 * registering.
 */
static int lazy_register(int dev, pid_t pid)
{
	const char *test = getenv("CRFS_LAZY_TEST");

	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			    UFFD_FEATURE_EVENT_REMAP,
	};
	struct crfs_lazy_args go = { .pid = pid, .op = CRFS_LAZY_GO, .uffd = lazy_uffd };
	struct uffdio_register reg;
	uint32_t i;

	if (test && !strcmp(test, "exit"))
		_exit(7);
	if (test && !strcmp(test, "late"))
		sleep(3);
	if (ioctl(lazy_uffd, UFFDIO_API, &api))
		return -errno;
	for (i = 0; i < nr_lazy_ranges; i++) {
		if (test && !strcmp(test, "unregistered"))
			break;
		if (lazy_ranges[i].pos != -1)
			continue;
		reg = (struct uffdio_register){
			.range = { lazy_ranges[i].addr, lazy_ranges[i].len },
			.mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(lazy_uffd, UFFDIO_REGISTER, &reg))
			return -errno;
	}
	return ioctl(dev, CRFS_IOC_LAZY, &go) ? -errno : 0;
}

/* Pending pages of [start, end) dropped: a touch gives zeros now. */
static void lazy_drop(uint64_t start, uint64_t end)
{
	size_t i;

	for (i = lazy_lower(start); i < nr_lazy && lazy_pages[i].addr < end; i++)
		if (lazy_pages[i].state == PAGE_PENDING) {
			lazy_pages[i].state = PAGE_DROPPED;
			lazy_left--;
		}
}

/* mremap: the pending pages of [from, from + len) now wait at @to. */
static void lazy_move(uint64_t from, uint64_t to, uint64_t len)
{
	size_t i;

	lazy_drop(to, to + len);	/* nothing of ours is left there, to be sure */
	for (i = lazy_lower(from); i < nr_lazy && lazy_pages[i].addr < from + len; i++)
		if (lazy_pages[i].state == PAGE_PENDING)
			lazy_pages[i].addr += to - from;
	qsort(lazy_pages, nr_lazy, sizeof(*lazy_pages), by_addr);
	lazy_cursor = 0;
}

/*
 * The image mapped read-only into this process (never into the program): UFFDIO_COPY
 * then copies from the page cache, once. Else pread() into lazy_buf.
 */
static void lazy_map_image(void)
{
	struct stat st;
	void *map;

	if (fstat(lazy_image, &st) || st.st_size <= 0)
		return;
	map = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, lazy_image, 0);
	if (map != MAP_FAILED) {
		lazy_map = map;
		lazy_size = st.st_size;
	}
}

/* Where the bytes of @n pages from @p are, or NULL (a short read: -EIO). */
static const char *lazy_src(size_t p, size_t n)
{
	off_t pos = lazy_pages[p].pos;

	if (lazy_map && pos >= 0 && pos <= lazy_size && n * PAGE <= (size_t)(lazy_size - pos))
		return lazy_map + pos;
	if (pread(lazy_image, lazy_buf, n * PAGE, pos) != (ssize_t)(n * PAGE))
		return NULL;
	return lazy_buf;
}

/*
 * @n pages of @p (contiguous in memory and in the image) copied in: 0, or -errno. A copy
 * that stopped part way (a page already there: the kernel says EAGAIN) marks what it
 * copied and returns 0; the rest comes on the next call.
 */
static int lazy_copy(size_t p, size_t n)
{
	const char *src = lazy_src(p, n);
	struct uffdio_copy copy = { .dst = lazy_pages[p].addr, .src = (uintptr_t)src,
				    .len = n * PAGE };
	size_t k, done = n;
	int ret = 0;

	if (!src)
		return -EIO;
	if (ioctl(lazy_uffd, UFFDIO_COPY, &copy)) {
		ret = -errno;
		done = copy.copy > 0 ? (size_t)copy.copy / PAGE : 0;
		if (ret == -EEXIST && !done)
			done = 1;	/* the first page is there already */
		if (done)
			ret = 0;
	}
	for (k = 0; k < done; k++) {
		if (lazy_pages[p + k].state == PAGE_PENDING)
			lazy_left--;
		lazy_pages[p + k].state = PAGE_IN;
	}
	return ret;
}

/* How many pages from @p, up to @max, are still to come, contiguous here and in the image. */
static size_t lazy_run(size_t p, size_t max)
{
	size_t n = 1;

	while (p + n < nr_lazy && n < max && lazy_pages[p + n].state == PAGE_PENDING &&
	       lazy_pages[p + n].addr == lazy_pages[p].addr + n * PAGE &&
	       lazy_pages[p + n].pos == lazy_pages[p].pos + (int64_t)(n * PAGE))
		n++;
	return n;
}

/* A fault at @addr served: 0, -EAGAIN (retry after the events), -ESRCH, or fatal. */
static int lazy_fault(uint64_t addr)
{
	struct uffdio_zeropage zero = { .range = { addr, PAGE } };
	struct uffdio_range wake = { addr, PAGE };
	size_t i;
	int ret;

	for (i = lazy_lower(addr); i < nr_lazy && lazy_pages[i].addr == addr; i++)
		if (lazy_pages[i].state == PAGE_PENDING) {
			lazy_faulted++;
			/* the pages after it too: programs mostly go on in order */
			ret = lazy_copy(i, lazy_run(i, LAZY_AROUND));
			if (ret == -ENOENT)	/* across two VMAs? */
				ret = lazy_copy(i, 1);
			if (ret != -ENOENT)
				return ret;
			lazy_pages[i].state = PAGE_DROPPED;	/* unmapped meanwhile */
			lazy_left--;
			return 0;
		}
	if (!ioctl(lazy_uffd, UFFDIO_ZEROPAGE, &zero))
		return 0;
	if (errno == EEXIST)
		return ioctl(lazy_uffd, UFFDIO_WAKE, &wake) ? -errno : 0;
	return errno == ENOENT ? 0 : -errno;	/* unmapped meanwhile: nothing waits */
}

/* The messages waiting on the userfaultfd: events applied, faults stalled to serve. */
static int lazy_events(void)
{
	struct uffd_msg msgs[LAZY_MSGS];
	ssize_t n = 0;
	int k;

	/* room for every fault of a read, or they stay in the kernel until the next one */
	while (nr_stalled <= LAZY_STALLED - LAZY_MSGS &&
	       (n = read(lazy_uffd, msgs, sizeof(msgs))) > 0) {
		for (k = 0; k < n / (ssize_t)sizeof(msgs[0]); k++) {
			struct uffd_msg *m = &msgs[k];

			if (m->event == UFFD_EVENT_PAGEFAULT)
				lazy_stalled[nr_stalled++] = m->arg.pagefault.address & ~(PAGE - 1);
			else if (m->event == UFFD_EVENT_REMOVE || m->event == UFFD_EVENT_UNMAP)
				lazy_drop(m->arg.remove.start, m->arg.remove.end);
			else if (m->event == UFFD_EVENT_REMAP)
				lazy_move(m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
		}
	}
	return n < 0 && errno != EAGAIN ? -errno : 0;
}

/* Serve the stalled faults; those that must wait for an event stay. */
static int lazy_serve_faults(void)
{
	int k, kept = 0, ret;

	for (k = 0; k < nr_stalled; k++) {
		ret = lazy_fault(lazy_stalled[k]);
		if (ret == -EAGAIN)
			lazy_stalled[kept++] = lazy_stalled[k];
		else if (ret)
			return ret;
	}
	nr_stalled = kept;
	return 0;
}

/* The next run of pending pages in address order, copied in: 0, -EAGAIN, or fatal. */
static int lazy_stream(void)
{
	size_t p, n;
	int ret;

	while (lazy_cursor < nr_lazy && lazy_pages[lazy_cursor].state != PAGE_PENDING)
		lazy_cursor++;
	if (lazy_cursor == nr_lazy) {
		lazy_cursor = 0;	/* some were left for an event: again from the start */
		return 0;
	}
	p = lazy_cursor;
	n = lazy_run(p, LAZY_BATCH);
	ret = lazy_copy(p, n);
	if (ret != -ENOENT)
		return ret;
	/* across two VMAs, or unmapped (its event may be unread): one by one */
	for (ret = 0; n-- && (!ret || ret == -ENOENT); p++) {
		ret = lazy_copy(p, 1);
		if (ret == -ENOENT && lazy_pages[p].state == PAGE_PENDING) {
			lazy_pages[p].state = PAGE_DROPPED;	/* nothing maps it now */
			lazy_left--;
		}
	}
	return ret == -ENOENT ? 0 : ret;
}

/* Faults first, the rest streamed, until every page is in (0) or the mm is gone. */
static int lazy_loop(void)
{
	struct pollfd pfd = { .fd = lazy_uffd, .events = POLLIN };
	int ret = 0;

	while (lazy_left || nr_stalled) {
		if (!lazy_left && poll(&pfd, 1, 0) <= 0)
			break;	/* no more pages: what still faults is a hole (zeros) */
		ret = lazy_events();
		if (!ret)
			ret = lazy_serve_faults();
		if (!ret && lazy_left)
			ret = lazy_stream();
		if (ret == -EAGAIN) {
			poll(&pfd, 1, 1);	/* an mremap/munmap in flight: its event comes */
			ret = 0;
		}
		if (ret)
			break;
	}
	return ret;
}

static void lazy_report(const char *stage, int err, const char *reason)
{
	struct report r = { .err = err, .offset = UINT64_MAX };

	strncpy(r.stage, stage, sizeof(r.stage) - 1);
	strncpy(r.reason, reason, sizeof(r.reason) - 1);
	if (report_fd >= 0 && write(report_fd, &r, sizeof(r)) != sizeof(r) && errno != EPIPE)
		perror("crfs-restart: report");
}

/*
 * The parent of a lazily restored @root: its report passed on (a failure), or the ranges
 * registered, GO, the pages served; then the relay's wait.
 */
static void lazy_serve(pid_t root, int from, int sock, int dev, int image)
{
	struct report r;
	char reason[96];
	int ret;

	prctl(PR_SET_DUMPABLE, 0);
	signal(SIGPIPE, SIG_IGN);	/* the reader may stop after "restored" */
	lazy_uffd = lazy_recv_uffd(sock);
	close(sock);
	lazy_image = image;
	lazy_map_image();
	if (read_full(from, &r, sizeof(r)) == sizeof(r)) {
		close(dev);	/* not restored: its report passed on */
		close(image);
		lazy_report(r.stage, r.err, r.reason);
		relay_wait(root);
	}
	close(from);
	ret = lazy_uffd < 0 ? -EBADF : lazy_plan(dev, root);
	if (!ret)
		ret = lazy_register(dev, root);
	if (ret) {
		kill(root, SIGKILL);
		fprintf(stderr, "crfs-restart: lazy: %s\n", strerror(-ret));
		lazy_report("lazy", -ret, "cannot register the lazy ranges");
		relay_wait(root);
	}
	snprintf(reason, sizeof(reason), "pid %d", (int)root);
	lazy_report("restored", 0, reason);
	ret = lazy_loop();
	if (ret && ret != -ESRCH) {
		kill(root, SIGKILL);
		fprintf(stderr, "crfs-restart: lazy: %s\n", strerror(-ret));
	} else {
		struct crfs_lazy_args done = { .pid = root, .op = CRFS_LAZY_DONE };

		ioctl(dev, CRFS_IOC_LAZY, &done);	/* fails if it has ended: nothing to do */
		snprintf(reason, sizeof(reason), "pid %d: %zu pages, %zu on fault", (int)root,
			 nr_lazy, lazy_faulted);
		if (!ret)	/* -ESRCH: its mm is gone, it ended before */
			lazy_report("resident", 0, reason);
	}
	if (report_fd >= 0)
		close(report_fd);
	close(lazy_uffd);
	close(image);
	close(dev);
	relay_wait(root);
}
