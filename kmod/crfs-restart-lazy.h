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
#define LAZY_STALLED	4096		/* faults to serve, per mm */
#define LAZY_MAX_MMS	(CRFS_LAZY_MAX_FORKS + 1)

/* UNMAPPED: gone with its range here, but a fork racing the munmap may still map it */
enum { PAGE_PENDING, PAGE_IN, PAGE_DROPPED, PAGE_UNMAPPED };

struct lazy_page {
	uint64_t addr;
	int64_t pos;
	int state;
};

/* One mm served: the restored program's, or one forked from it (UFFD_EVENT_FORK). */
struct lazy_mm {
	int uffd;
	struct lazy_page *pages;	/* sorted by address */
	size_t nr, left, cursor;
	int nr_stalled;
	uint64_t stalled[LAZY_STALLED];	/* faults to serve */
};

static int lazy;			/* --lazy */
static struct lazy_mm *lazy_mms[LAZY_MAX_MMS];	/* [0]: the restored program's */
static int nr_mms, lazy_forks;
static size_t nr_lazy, lazy_faulted;
static struct crfs_lazy_range *lazy_ranges;
static uint32_t nr_lazy_ranges;
static char *lazy_buf;
static const char *lazy_map;		/* the image, mapped in this process only */
static off_t lazy_size;
static int lazy_image = -1, lazy_dev = -1, lazy_uffd0 = -1;
static pid_t lazy_root;

/*
 * The child: a userfaultfd of its mm, its API set (forks followed: UFFD_FEATURE_EVENT_FORK,
 * which needs CAP_SYS_PTRACE), to the server.
 */
static void lazy_send_uffd(int sock)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "u", .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			    UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_FORK,
	};
	static const char no_fork[] =
		"UFFD_FEATURE_EVENT_FORK refused: --lazy follows forks, which needs CAP_SYS_PTRACE";
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int uffd;

	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 && errno == EPERM)
		fail("lazy", EPERM, "userfaultfd refused: as non-root, --lazy needs sysctl "
		     "vm.unprivileged_userfaultfd=1", UINT64_MAX, 0);
	if (uffd < 0)
		fail("lazy", errno, "userfaultfd", UINT64_MAX, 0);
	if (ioctl(uffd, UFFDIO_API, &api))
		fail("lazy", errno, errno == EPERM ? no_fork : "UFFDIO_API", UINT64_MAX, 0);
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

/* The first page of @m at or above @addr. */
static size_t lazy_lower(const struct lazy_mm *m, uint64_t addr)
{
	size_t lo = 0, hi = m->nr, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (m->pages[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A new mm to serve through @uffd, room for @nr pages; NULL without memory. */
static struct lazy_mm *lazy_mm_new(int uffd, size_t nr)
{
	struct lazy_mm *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->pages = calloc(nr + 1, sizeof(*m->pages));
	if (!m->pages) {
		free(m);
		return NULL;
	}
	m->uffd = uffd;
	m->nr = nr;
	return m;
}

/* The ranges from the module, the pages to bring in, sorted by address: lazy_mms[0]. */
static int lazy_plan(int dev, pid_t pid)
{
	struct crfs_lazy_args a = { .pid = pid, .op = CRFS_LAZY_RANGES };
	struct lazy_mm *m;
	uint32_t i;
	uint64_t k;
	size_t n = 0;

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
	m = lazy_mm_new(lazy_uffd0, nr_lazy);
	lazy_buf = aligned_alloc(PAGE, LAZY_BATCH * PAGE);
	if (!m || !lazy_buf)
		return -ENOMEM;
	for (i = 0; i < nr_lazy_ranges; i++)
		for (k = 0; lazy_ranges[i].pos >= 0 && k < lazy_ranges[i].len / PAGE; k++)
			m->pages[n++] = (struct lazy_page){
				.addr = lazy_ranges[i].addr + k * PAGE,
				.pos = lazy_ranges[i].pos + (int64_t)(k * PAGE) };
	qsort(m->pages, m->nr, sizeof(*m->pages), by_addr);
	m->left = m->nr;
	lazy_mms[nr_mms++] = m;
	return 0;
}

/*
 * Every VMA registered, then GO. For the tests of the module's refusals only
 * (tests/guest_lazy.py), $CRFS_LAZY_TEST makes the server misbehave here: "exit" dies
 * before GO, "late" says GO after 3 s, "unregistered" says GO without registering.
 */
static int lazy_register(int dev, pid_t pid)
{
	const char *test = getenv("CRFS_LAZY_TEST");
	struct crfs_lazy_args go = { .pid = pid, .op = CRFS_LAZY_GO, .uffd = lazy_uffd0 };
	struct uffdio_register reg;
	uint32_t i;

	if (test && !strcmp(test, "exit"))
		_exit(7);
	if (test && !strcmp(test, "late"))
		sleep(3);
	for (i = 0; i < nr_lazy_ranges; i++) {
		if (test && !strcmp(test, "unregistered"))
			break;
		if (lazy_ranges[i].pos != -1)
			continue;
		reg = (struct uffdio_register){
			.range = { lazy_ranges[i].addr, lazy_ranges[i].len },
			.mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(lazy_uffd0, UFFDIO_REGISTER, &reg))
			return -errno;
	}
	return ioctl(dev, CRFS_IOC_LAZY, &go) ? -errno : 0;
}

/* Pending pages of [start, end) dropped (@state DROPPED) or unmapped. */
static void lazy_drop(struct lazy_mm *m, uint64_t start, uint64_t end, int state)
{
	size_t i;

	for (i = lazy_lower(m, start); i < m->nr && m->pages[i].addr < end; i++)
		if (m->pages[i].state == PAGE_PENDING) {
			m->pages[i].state = state;
			m->left--;
		}
}

/* mremap: the pending pages of [from, from + len) now wait at @to. */
static void lazy_move(struct lazy_mm *m, uint64_t from, uint64_t to, uint64_t len)
{
	size_t i;

	lazy_drop(m, to, to + len, PAGE_DROPPED);	/* nothing of ours is left there */
	for (i = lazy_lower(m, from); i < m->nr && m->pages[i].addr < from + len; i++)
		if (m->pages[i].state == PAGE_PENDING)
			m->pages[i].addr += to - from;
	qsort(m->pages, m->nr, sizeof(*m->pages), by_addr);
	m->cursor = 0;
}

/*
 * UFFD_EVENT_FORK: the child's VMAs are registered with @ufd (its missing pages fault
 * there). It misses what @from still misses at this event (a UFFDIO_COPY into @from
 * fails with EAGAIN from the fork's copy of the mm until the event is read), and what
 * @from unmapped since (an munmap racing the fork may be told first: a copy into a range
 * the child does not map fails with ENOENT and drops it). The module takes a reference to
 * @ufd first: if this server dies, the child is killed before the userfaultfd goes.
 */
static int lazy_fork(const struct lazy_mm *from, int ufd)
{
	struct crfs_lazy_args a = { .pid = lazy_root, .op = CRFS_LAZY_FORK, .uffd = ufd };
	struct lazy_mm *m;
	size_t i;

	if (ioctl(lazy_dev, CRFS_IOC_LAZY, &a))	/* ENOSPC beyond CRFS_LAZY_MAX_FORKS */
		return -errno;
	if (nr_mms == LAZY_MAX_MMS)
		return -ENOSPC;
	m = lazy_mm_new(ufd, from->nr);
	if (!m)
		return -ENOMEM;
	memcpy(m->pages, from->pages, from->nr * sizeof(*m->pages));
	for (i = 0; i < m->nr; i++) {
		if (m->pages[i].state == PAGE_UNMAPPED)
			m->pages[i].state = PAGE_PENDING;
		m->left += m->pages[i].state == PAGE_PENDING;
	}
	lazy_mms[nr_mms++] = m;
	lazy_forks++;
	return 0;
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

/* Where the bytes of @n pages from @pos are, or NULL (a short read: -EIO). */
static const char *lazy_src(off_t pos, size_t n)
{
	if (lazy_map && pos >= 0 && pos <= lazy_size && n * PAGE <= (size_t)(lazy_size - pos))
		return lazy_map + pos;
	if (pread(lazy_image, lazy_buf, n * PAGE, pos) != (ssize_t)(n * PAGE))
		return NULL;
	return lazy_buf;
}

/*
 * @n pages of @p in @m (contiguous in memory and in the image) copied in: 0, or -errno.
 * A copy that stopped part way (a page already there: the kernel says EAGAIN) marks what
 * it copied and returns 0; the rest comes on the next call.
 */
static int lazy_copy(struct lazy_mm *m, size_t p, size_t n)
{
	const char *src = lazy_src(m->pages[p].pos, n);
	struct uffdio_copy copy = { .dst = m->pages[p].addr, .src = (uintptr_t)src,
				    .len = n * PAGE };
	size_t k, done = n;
	int ret = 0;

	if (!src)
		return -EIO;
	if (ioctl(m->uffd, UFFDIO_COPY, &copy)) {
		ret = -errno;
		done = copy.copy > 0 ? (size_t)copy.copy / PAGE : 0;
		if (ret == -EEXIST && !done)
			done = 1;	/* the first page is there already */
		if (done)
			ret = 0;
	}
	for (k = 0; k < done; k++) {
		if (m->pages[p + k].state == PAGE_PENDING)
			m->left--;
		m->pages[p + k].state = PAGE_IN;
	}
	return ret;
}

/* How many pages from @p, up to @max, are still to come, contiguous here and in the image. */
static size_t lazy_run(const struct lazy_mm *m, size_t p, size_t max)
{
	const struct lazy_page *pg = m->pages;
	size_t n = 1;

	while (p + n < m->nr && n < max && pg[p + n].state == PAGE_PENDING &&
	       pg[p + n].addr == pg[p].addr + n * PAGE &&
	       pg[p + n].pos == pg[p].pos + (int64_t)(n * PAGE))
		n++;
	return n;
}

/* Page @i of @m: none maps it any more (ENOENT), a touch gives zeros. */
static void lazy_gone_page(struct lazy_mm *m, size_t i)
{
	if (m->pages[i].state == PAGE_PENDING) {
		m->pages[i].state = PAGE_DROPPED;
		m->left--;
	}
}

/* A fault of @m at @addr served: 0, -EAGAIN (retry after the events), -ESRCH, or fatal. */
static int lazy_fault(struct lazy_mm *m, uint64_t addr)
{
	struct uffdio_zeropage zero = { .range = { addr, PAGE } };
	struct uffdio_range wake = { addr, PAGE };
	size_t i;
	int ret;

	for (i = lazy_lower(m, addr); i < m->nr && m->pages[i].addr == addr; i++)
		if (m->pages[i].state == PAGE_PENDING) {
			lazy_faulted++;
			/* the pages after it too: programs mostly go on in order */
			ret = lazy_copy(m, i, lazy_run(m, i, LAZY_AROUND));
			if (ret == -ENOENT)	/* across two VMAs? */
				ret = lazy_copy(m, i, 1);
			if (ret != -ENOENT)
				return ret;
			lazy_gone_page(m, i);	/* unmapped meanwhile */
			return 0;
		}
	if (!ioctl(m->uffd, UFFDIO_ZEROPAGE, &zero))
		return 0;
	if (errno == EEXIST)
		return ioctl(m->uffd, UFFDIO_WAKE, &wake) ? -errno : 0;
	return errno == ENOENT ? 0 : -errno;	/* unmapped meanwhile: nothing waits */
}

/* One message of @m: an event applied, a fault stalled to serve. 0 or fatal. */
static int lazy_msg(struct lazy_mm *m, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_PAGEFAULT:
		m->stalled[m->nr_stalled++] = msg->arg.pagefault.address & ~(PAGE - 1);
		return 0;
	case UFFD_EVENT_REMOVE:
		lazy_drop(m, msg->arg.remove.start, msg->arg.remove.end, PAGE_DROPPED);
		return 0;
	case UFFD_EVENT_UNMAP:
		lazy_drop(m, msg->arg.remove.start, msg->arg.remove.end, PAGE_UNMAPPED);
		return 0;
	case UFFD_EVENT_REMAP:
		lazy_move(m, msg->arg.remap.from, msg->arg.remap.to, msg->arg.remap.len);
		return 0;
	case UFFD_EVENT_FORK:
		return lazy_fork(m, (int)msg->arg.fork.ufd);
	}
	return 0;
}

/* The messages waiting on @m's userfaultfd: events applied, faults stalled to serve. */
static int lazy_events(struct lazy_mm *m)
{
	struct uffd_msg msgs[LAZY_MSGS];
	ssize_t n = 0;
	int k, ret;

	/* room for every fault of a read, or they stay in the kernel until the next one */
	while (m->nr_stalled <= LAZY_STALLED - LAZY_MSGS &&
	       (n = read(m->uffd, msgs, sizeof(msgs))) > 0) {
		for (k = 0; k < n / (ssize_t)sizeof(msgs[0]); k++) {
			ret = lazy_msg(m, &msgs[k]);
			if (ret)
				return ret;
		}
	}
	return n < 0 && errno != EAGAIN ? -errno : 0;
}

/* Serve the stalled faults of @m; those that must wait for an event stay. */
static int lazy_serve_faults(struct lazy_mm *m)
{
	int k, kept = 0, ret;

	for (k = 0; k < m->nr_stalled; k++) {
		ret = lazy_fault(m, m->stalled[k]);
		if (ret == -EAGAIN)
			m->stalled[kept++] = m->stalled[k];
		else if (ret)
			return ret;
	}
	m->nr_stalled = kept;
	return 0;
}

/* The next run of pending pages of @m in address order, copied in: 0, -EAGAIN, or fatal. */
static int lazy_stream(struct lazy_mm *m)
{
	size_t p, n;
	int ret;

	while (m->cursor < m->nr && m->pages[m->cursor].state != PAGE_PENDING)
		m->cursor++;
	if (m->cursor == m->nr) {
		m->cursor = 0;	/* some were left for an event: again from the start */
		return 0;
	}
	p = m->cursor;
	n = lazy_run(m, p, LAZY_BATCH);
	ret = lazy_copy(m, p, n);
	if (ret != -ENOENT)
		return ret;
	/* across two VMAs, or unmapped (its event may be unread): one by one */
	for (ret = 0; n-- && (!ret || ret == -ENOENT); p++) {
		ret = lazy_copy(m, p, 1);
		if (ret == -ENOENT)
			lazy_gone_page(m, p);	/* nothing maps it now */
	}
	return ret == -ENOENT ? 0 : ret;
}

/* Pages still to come and faults to serve, in every mm. */
static size_t lazy_todo(void)
{
	size_t n = 0;
	int i;

	for (i = 0; i < nr_mms; i++)
		n += lazy_mms[i]->left + lazy_mms[i]->nr_stalled;
	return n;
}

/* Mm @i has gone (exit or exec): forgotten (its userfaultfd closed). */
static void lazy_mm_gone(int i)
{
	struct lazy_mm *m = lazy_mms[i];

	if (m->uffd != lazy_uffd0)	/* the program's own stays open until the end */
		close(m->uffd);
	free(m->pages);
	free(m);
	lazy_mms[i] = lazy_mms[--nr_mms];
}

/* A message or the end of an mremap/munmap in flight, @ms milliseconds at most. */
static void lazy_poll(int ms)
{
	struct pollfd pfd[LAZY_MAX_MMS];
	int i;

	for (i = 0; i < nr_mms; i++)
		pfd[i] = (struct pollfd){ .fd = lazy_mms[i]->uffd, .events = POLLIN };
	poll(pfd, nr_mms, ms);
}

static int lazy_nostream;		/* test hook: faults only, nothing streamed */

/* @m: its messages, its faults, then a run of the rest. */
static int lazy_step(struct lazy_mm *m)
{
	int ret = lazy_events(m);

	if (!ret)
		ret = lazy_serve_faults(m);
	if (!ret && m->left && !lazy_nostream)
		ret = lazy_stream(m);
	else if (!ret && m->left)
		lazy_poll(10);
	return ret;
}

/*
 * Faults first, the rest streamed, in every mm, until every page is in (0), every mm is
 * gone (-ESRCH), or a fatal error.
 */
static int lazy_loop(void)
{
	int i, ret, again;

	while (nr_mms && lazy_todo()) {
		again = 0;
		for (i = 0; i < nr_mms; i++) {
			ret = lazy_step(lazy_mms[i]);
			if (ret == -EAGAIN)
				again = 1;	/* an mremap/munmap in flight: its event comes */
			else if (ret == -ESRCH)
				lazy_mm_gone(i--);
			else if (ret)
				return ret;
		}
		if (again)
			lazy_poll(1);
	}
	return nr_mms ? 0 : -ESRCH;
}

static void lazy_report(const char *stage, int err, const char *reason)
{
	struct report r = { .err = err, .offset = UINT64_MAX };

	strncpy(r.stage, stage, sizeof(r.stage) - 1);
	strncpy(r.reason, reason, sizeof(r.reason) - 1);
	if (report_fd >= 0 && write(report_fd, &r, sizeof(r)) != sizeof(r) && errno != EPIPE)
		perror("crfs-restart: report");
}

/* A failure before GO: the program killed, the failure reported, its end relayed. */
static void lazy_fail_early(pid_t root, int ret)
{
	kill(root, SIGKILL);
	fprintf(stderr, "crfs-restart: lazy: %s\n", strerror(-ret));
	lazy_report("lazy", -ret, "cannot register the lazy ranges");
	relay_wait(root);
}

/*
 * The pages served; then, all in: DONE, "resident" reported. A fatal error kills the
 * program, and closing the device first has the module kill everything it forked
 * before any userfaultfd of ours goes.
 */
static void lazy_finish(pid_t root)
{
	struct crfs_lazy_args done = { .pid = root, .op = CRFS_LAZY_DONE };
	const char *test = getenv("CRFS_LAZY_TEST");
	char reason[96];
	int ret;

	/*
	 * test hooks: "eio", the server fails at once, as on an unreadable image;
	 * "nostream", pages come on fault only (so that a program's forks find them missing)
	 */
	lazy_nostream = test && !strcmp(test, "nostream");
	ret = test && !strcmp(test, "eio") ? -EIO : lazy_loop();
	if (ret && ret != -ESRCH) {
		kill(root, SIGKILL);
		close(lazy_dev);
		fprintf(stderr, "crfs-restart: lazy: %s\n", strerror(-ret));
		lazy_report("lazy", -ret, "page server failed: program killed");
		return;
	}
	ioctl(lazy_dev, CRFS_IOC_LAZY, &done);	/* fails if it has ended: nothing to do */
	snprintf(reason, sizeof(reason), "pid %d: %zu pages, %zu on fault, %d forks",
		 (int)root, nr_lazy, lazy_faulted, lazy_forks);
	if (!ret)	/* -ESRCH: every mm is gone, it ended before */
		lazy_report("resident", 0, reason);
	close(lazy_dev);
}

/*
 * @dev moved to an fd above those the userfaultfds of forks will get: if this process
 * dies, its files are released last fd first, so the module kills what the program forked
 * (the device's release) before any userfaultfd of a child goes (which would let it fault
 * zero pages in). @dev itself when there is no room up there.
 */
static int lazy_high_fd(int dev)
{
	struct rlimit lim;
	int high = -1;

	if (!getrlimit(RLIMIT_NOFILE, &lim) && lim.rlim_cur > 64)
		high = fcntl(dev, F_DUPFD_CLOEXEC, (int)(lim.rlim_cur > 4096 ? 4095 :
							 lim.rlim_cur - 1));
	if (high < 0)
		return dev;
	close(dev);
	return high;
}

/*
 * The parent of a lazily restored @root: its report passed on (a failure), or the ranges
 * registered, GO, the pages served; then the relay's wait.
 */
static void lazy_serve(pid_t root, int from, int sock, int dev, int image)
{
	struct report r;
	char reason[96];
	int ret, i;

	prctl(PR_SET_DUMPABLE, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);	/* what it forks stays below us: see the module */
	signal(SIGPIPE, SIG_IGN);	/* the reader may stop after "restored" */
	lazy_uffd0 = lazy_recv_uffd(sock);
	close(sock);
	lazy_image = image;
	lazy_dev = lazy_high_fd(dev);
	dev = lazy_dev;
	lazy_root = root;
	lazy_map_image();
	if (read_full(from, &r, sizeof(r)) == sizeof(r)) {
		close(dev);	/* not restored: its report passed on */
		close(image);
		lazy_report(r.stage, r.err, r.reason);
		relay_wait(root);
	}
	close(from);
	ret = lazy_uffd0 < 0 ? -EBADF : lazy_plan(dev, root);
	if (!ret)
		ret = lazy_register(dev, root);
	if (ret)
		lazy_fail_early(root, ret);
	snprintf(reason, sizeof(reason), "pid %d", (int)root);
	lazy_report("restored", 0, reason);
	lazy_finish(root);
	if (report_fd >= 0)
		close(report_fd);
	for (i = 0; i < nr_mms; i++)
		if (lazy_mms[i]->uffd != lazy_uffd0)
			close(lazy_mms[i]->uffd);
	close(lazy_uffd0);
	close(image);
	relay_wait(root);
}
