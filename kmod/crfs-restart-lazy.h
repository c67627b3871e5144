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
 *   - between faults, the rest in address order, up to 4 MiB a UFFDIO_COPY, by two
 *     threads at once: the serving one the next 4 MiB still to come, a second one
 *     (lazy_streamer) the 4 MiB after, joined before any message is read
 *     ($CRFS_LAZY_STREAMS=1: the serving thread alone);
 *   - madvise(MADV_DONTNEED/REMOVE) and munmap of a range (UFFD_EVENT_REMOVE, _UNMAP)
 *     drop its pages still to come (a later touch gets zeros, as anonymous memory does);
 *     mremap (UFFD_EVENT_REMAP) moves them with the range.
 * When every page is in: CRFS_LAZY_DONE, a second report "resident" on -r FD (stage
 * "resident", reason "pid N: P pages, F on fault"), the userfaultfd is closed (which
 * unregisters the ranges: untouched holes then fill with zeros as usual) with the image
 * and the device, and the restarter relays the exit status as without --lazy.
 * If the server dies, the module kills the program before the userfaultfd goes away.
 *
 * A tree: the root forks the others as without --lazy, and each process, once forked (a
 * userfaultfd is bound to the mm it was made in), sends one with its pid over the same
 * socketpair; the server takes them while the tree restores (poll on the report pipe and
 * the socket), checks at EOF that every restored process sent one, asks every process's
 * ranges (which makes them the device's: its release kills them), registers and lets each
 * go, and serves them all from one loop, with what they fork. At most LAZY_MAX_PROCS
 * processes (a larger tree is refused before anything is forked) and LAZY_MAX_MMS
 * userfaultfds in all. DONE goes deepest first: the module lets the server ask for a
 * process only through ancestors it still lists.
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/stat.h>

#define LAZY_BATCH	1024		/* pages a UFFDIO_COPY while streaming (4 MiB) */
#define LAZY_AROUND	64		/* pages a fault brings in, from its own on (256 KiB) */
#define PAGE		4096UL
#define LAZY_MSGS	64		/* uffd messages a read */
#define LAZY_STALLED	4096		/* faults to serve, per mm */
#define LAZY_MAX_PROCS	256		/* processes of a tree served (their userfaultfds) */
#define LAZY_MAX_MMS	512		/* userfaultfds served: the processes' and their forks' */

/* UNMAPPED: gone with its range here, but a fork racing the munmap may still map it */
enum { PAGE_PENDING, PAGE_IN, PAGE_DROPPED, PAGE_UNMAPPED };

struct lazy_page {
	uint64_t addr;
	int64_t pos;
	int state;
};

/* One mm served: a restored process's, or one forked from it (UFFD_EVENT_FORK). */
struct lazy_mm {
	int uffd;
	pid_t pid;			/* the restored process it is, or descends from */
	struct crfs_lazy_range *ranges;	/* a restored process's, until registered */
	uint32_t nr_ranges;
	int forked;			/* a fork's (UFFD_EVENT_FORK) */
	struct lazy_page *pages;	/* sorted by address */
	size_t nr, left, cursor;
	int nr_stalled;
	uint64_t stalled[LAZY_STALLED];	/* faults to serve */
};

/* A restored process (the program, or a process of its tree) and its userfaultfd. */
struct lazy_proc {
	pid_t pid;
	int uffd;
};

static int lazy;			/* --lazy */
static int lazy_sock = -1;		/* the restored processes' end: their userfaultfds */
static struct lazy_mm *lazy_mms[LAZY_MAX_MMS];
static struct lazy_proc lazy_procs[LAZY_MAX_PROCS];
static int nr_mms, lazy_forks, nr_lazy_procs, lazy_max_procs = LAZY_MAX_PROCS;
static size_t nr_lazy, lazy_faulted;
static char *lazy_buf;
static const char *lazy_map;		/* the image, mapped in this process only */
static off_t lazy_size;
static int lazy_image = -1, lazy_dev = -1;
static pid_t lazy_root;

/*
 * The child: a userfaultfd of its mm, its API set (forks followed: UFFD_FEATURE_EVENT_FORK,
 * which needs CAP_SYS_PTRACE), to the server.
 */
static void lazy_send_uffd(int sock)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	int32_t self = (int32_t)syscall(SYS_getpid);
	struct iovec iov = { .iov_base = &self, .iov_len = sizeof(self) };
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
	if (sendmsg(sock, &msg, 0) != sizeof(self))
		fail("lazy", errno, "cannot pass the userfaultfd on", UINT64_MAX, 0);
	close(uffd);
}

/*
 * A restored process's userfaultfd and pid from @sock into lazy_procs[]: 1, 0 at EOF,
 * -EAGAIN when none waits (MSG_DONTWAIT in @flags), -errno. Beyond lazy_max_procs: -E2BIG.
 */
static int lazy_recv_uffd(int sock, int flags)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	int32_t pid = 0;
	struct iovec iov = { .iov_base = &pid, .iov_len = sizeof(pid) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *c;
	ssize_t n;
	int fd = -1;

	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (n == 0)
		return 0;
	c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0 || n != sizeof(pid) || pid <= 0) {
		if (fd >= 0)
			close(fd);
		return -EPROTO;
	}
	if (nr_lazy_procs == lazy_max_procs) {
		close(fd);
		return -E2BIG;
	}
	lazy_procs[nr_lazy_procs++] = (struct lazy_proc){ .pid = pid, .uffd = fd };
	return 1;
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

/* The ranges of process @p from the module, its pages to bring in, sorted: a new mm. */
static int lazy_plan(int dev, const struct lazy_proc *p)
{
	struct crfs_lazy_args a = { .pid = p->pid, .op = CRFS_LAZY_RANGES };
	struct crfs_lazy_range *ranges;
	struct lazy_mm *m;
	uint32_t i;
	uint64_t k;
	size_t n = 0, nr = 0;

	if (ioctl(dev, CRFS_IOC_LAZY, &a))
		return -errno;
	ranges = calloc(a.nr_ranges + 1, sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	a.ranges = (uintptr_t)ranges;
	if (ioctl(dev, CRFS_IOC_LAZY, &a)) {
		free(ranges);
		return -errno;
	}
	for (i = 0; i < a.nr_ranges; i++)
		if (ranges[i].pos >= 0)
			nr += ranges[i].len / PAGE;
	m = nr_mms < LAZY_MAX_MMS ? lazy_mm_new(p->uffd, nr) : NULL;
	if (!m) {
		free(ranges);
		return nr_mms < LAZY_MAX_MMS ? -ENOMEM : -ENOSPC;
	}
	m->pid = p->pid;
	m->ranges = ranges;
	m->nr_ranges = a.nr_ranges;
	for (i = 0; i < a.nr_ranges; i++)
		for (k = 0; ranges[i].pos >= 0 && k < ranges[i].len / PAGE; k++)
			m->pages[n++] = (struct lazy_page){
				.addr = ranges[i].addr + k * PAGE,
				.pos = ranges[i].pos + (int64_t)(k * PAGE) };
	qsort(m->pages, m->nr, sizeof(*m->pages), by_addr);
	m->left = m->nr;
	nr_lazy += nr;
	lazy_mms[nr_mms++] = m;
	return 0;
}

/*
 * Every VMA of @m registered, then GO. For the tests of the module's refusals only
 * (tests/guest_lazy.py), $CRFS_LAZY_TEST makes the server misbehave here: "exit" dies
 * before GO, "late" says GO after 3 s, "unregistered" says GO without registering.
 */
static int lazy_register(int dev, struct lazy_mm *m)
{
	const char *test = getenv("CRFS_LAZY_TEST");
	struct crfs_lazy_args go = { .pid = m->pid, .op = CRFS_LAZY_GO, .uffd = m->uffd };
	struct uffdio_register reg;
	uint32_t i;

	if (test && !strcmp(test, "exit"))
		_exit(7);
	if (test && !strcmp(test, "late"))
		sleep(3);
	for (i = 0; i < m->nr_ranges; i++) {
		if (test && !strcmp(test, "unregistered"))
			break;
		if (m->ranges[i].pos != -1)
			continue;
		reg = (struct uffdio_register){
			.range = { m->ranges[i].addr, m->ranges[i].len },
			.mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(m->uffd, UFFDIO_REGISTER, &reg))
			return -errno;
	}
	free(m->ranges);
	m->ranges = NULL;
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
 * The userfaultfd @ufd of a fork lent to the module (CRFS_LAZY_FORK) with the restore of
 * @pid, the process it descends from, or, that one gone, of another process of the tree.
 */
static int lazy_lend(pid_t pid, int ufd)
{
	struct crfs_lazy_args a = { .pid = pid, .op = CRFS_LAZY_FORK, .uffd = ufd };
	int k;

	if (!ioctl(lazy_dev, CRFS_IOC_LAZY, &a))
		return 0;
	for (k = 0; errno == ESRCH && k < nr_lazy_procs; k++) {
		a.pid = lazy_procs[k].pid;
		if (a.pid != pid && !ioctl(lazy_dev, CRFS_IOC_LAZY, &a))
			return 0;
	}
	return -errno;	/* ENOSPC beyond CRFS_LAZY_MAX_FORKS */
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
	struct lazy_mm *m;
	size_t i;
	int ret;

	ret = lazy_lend(from->pid, ufd);
	if (ret)
		return ret;
	if (nr_mms == LAZY_MAX_MMS)
		return -ENOSPC;
	m = lazy_mm_new(ufd, from->nr);
	if (!m)
		return -ENOMEM;
	m->pid = from->pid;
	m->forked = 1;
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

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22	/* Linux 5.14 */
#endif
#define LAZY_POPULATE	(64UL << 20)	/* bytes a madvise() of lazy_populate() */

/*
 * A thread of the server: the image's mapping populated (its page tables filled, the file
 * read in if it is not cached), in file order, ahead of the stream, so that the UFFDIO_COPYs
 * of the serving thread do not fault on their source. A kernel without MADV_POPULATE_READ
 * says EINVAL: the copies then fault as before.
 */
static void *lazy_populate(void *arg)
{
	off_t pos;

	(void)arg;
	for (pos = 0; pos < lazy_size; pos += LAZY_POPULATE)
		if (madvise((char *)lazy_map + pos, lazy_size - pos < (off_t)LAZY_POPULATE ?
			    (size_t)(lazy_size - pos) : LAZY_POPULATE, MADV_POPULATE_READ))
			break;
	return NULL;
}

/*
 * The image mapped read-only into this process (never into the program): UFFDIO_COPY
 * then copies from the page cache, once, the mapping populated by a thread once the
 * program runs (lazy_start_populate()). Else pread() into lazy_buf.
 */
static void lazy_map_image(void)
{
	struct stat st;
	void *map;

	if (fstat(lazy_image, &st) || st.st_size <= 0)
		return;
	map = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, lazy_image, 0);
	if (map == MAP_FAILED)
		return;
	lazy_map = map;
	lazy_size = st.st_size;
}

/* lazy_populate() started, once the program runs: not to compete with its restore. */
static void lazy_start_populate(void)
{
	pthread_t t;

	if (lazy_map && !pthread_create(&t, NULL, lazy_populate, NULL))
		pthread_detach(t);
}

/* Where @n pages at @pos are in the image's mapping, or NULL (never lazy_buf: not ours). */
static const char *lazy_mapped(off_t pos, size_t n)
{
	if (lazy_map && pos >= 0 && pos <= lazy_size && n * PAGE <= (size_t)(lazy_size - pos))
		return lazy_map + pos;
	return NULL;
}

/* Where the bytes of @n pages from @pos are, or NULL (a short read: -EIO). */
static const char *lazy_src(off_t pos, size_t n)
{
	const char *mapped = lazy_mapped(pos, n);

	if (mapped)
		return mapped;
	if (pread(lazy_image, lazy_buf, n * PAGE, pos) != (ssize_t)(n * PAGE))
		return NULL;
	return lazy_buf;
}

/*
 * How many of @n pages a UFFDIO_COPY that ended with @err (0 or -errno) after @copied
 * bytes brought in: a page already there (EEXIST) counts as in.
 */
static size_t lazy_copied(int err, int64_t copied, size_t n)
{
	size_t done;

	if (!err)
		return n;
	done = copied > 0 ? (size_t)copied / PAGE : 0;
	return err == -EEXIST && !done ? 1 : done;	/* the first page is there already */
}

/* @done pages of @m from @p are in. */
static void lazy_mark(struct lazy_mm *m, size_t p, size_t done)
{
	size_t k;

	for (k = 0; k < done; k++) {
		if (m->pages[p + k].state == PAGE_PENDING)
			m->left--;
		m->pages[p + k].state = PAGE_IN;
	}
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
	size_t done;
	int ret = 0;

	if (!src)
		return -EIO;
	if (ioctl(m->uffd, UFFDIO_COPY, &copy))
		ret = -errno;
	done = lazy_copied(ret, copy.copy, n);
	lazy_mark(m, p, done);
	return done ? 0 : ret;
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

/* The run of @n pending pages of @m from @p copied in: 0, -EAGAIN, or fatal. */
static int lazy_stream_run(struct lazy_mm *m, size_t p, size_t n)
{
	int ret = lazy_copy(m, p, n);

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

/*
 * The second streaming thread: the serving thread hands it the span of pages after its
 * own and waits for it before it reads any message, so that no copy of ours is in flight
 * while an event is applied (a copy begun before an munmap or MADV_DONTNEED was read could
 * land after the pages were dropped), and nothing else touches the span meanwhile.
 */
enum { JOB_IDLE, JOB_POSTED, JOB_DONE };

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int state;
	struct lazy_mm *m;
	size_t from, to;		/* posted: the span of m->pages */
	size_t done;			/* done: pages it marked in */
} lazy_job = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int lazy_helper;			/* lazy_streamer() runs */
static size_t lazy_helped;		/* pages it copied */

/*
 * The pending runs of [@from, @to) of @m copied in, in order, until one does not go in
 * whole (EAGAIN, ENOENT, gone...): what stays to come, the serving thread copies itself
 * later and meets the same answer, which it knows how to take. The pages it brought in.
 */
static size_t lazy_copy_span(struct lazy_mm *m, size_t from, size_t to)
{
	struct uffdio_copy copy;
	size_t p, n, k, done, sum = 0;
	int err;

	for (p = from; p < to; p += n) {
		n = m->pages[p].state == PAGE_PENDING ? lazy_run(m, p, to - p) : 1;
		if (m->pages[p].state != PAGE_PENDING)
			continue;
		copy = (struct uffdio_copy){ .dst = m->pages[p].addr, .len = n * PAGE,
			.src = (uintptr_t)lazy_mapped(m->pages[p].pos, n) };
		if (!copy.src)
			break;
		err = ioctl(m->uffd, UFFDIO_COPY, &copy) ? -errno : 0;
		done = lazy_copied(err, copy.copy, n);
		for (k = 0; k < done; k++)
			m->pages[p + k].state = PAGE_IN;	/* all were pending */
		sum += done;
		if (done < n)
			break;
	}
	return sum;
}

static void *lazy_streamer(void *arg)
{
	struct lazy_mm *m;
	size_t from, to, done;

	(void)arg;
	pthread_mutex_lock(&lazy_job.lock);
	for (;;) {
		while (lazy_job.state != JOB_POSTED)
			pthread_cond_wait(&lazy_job.cond, &lazy_job.lock);
		m = lazy_job.m;
		from = lazy_job.from;
		to = lazy_job.to;
		pthread_mutex_unlock(&lazy_job.lock);
		done = lazy_copy_span(m, from, to);
		pthread_mutex_lock(&lazy_job.lock);
		lazy_job.done = done;
		lazy_job.state = JOB_DONE;
		pthread_cond_broadcast(&lazy_job.cond);
	}
	return NULL;
}

/* [@from, @to) of @m handed to lazy_streamer(). */
static void lazy_post(struct lazy_mm *m, size_t from, size_t to)
{
	pthread_mutex_lock(&lazy_job.lock);
	lazy_job.m = m;
	lazy_job.from = from;
	lazy_job.to = to;
	lazy_job.state = JOB_POSTED;
	pthread_cond_broadcast(&lazy_job.cond);
	pthread_mutex_unlock(&lazy_job.lock);
}

/* Wait for lazy_streamer()'s span of @m: its pages counted in. */
static void lazy_join(struct lazy_mm *m)
{
	size_t done;

	pthread_mutex_lock(&lazy_job.lock);
	while (lazy_job.state != JOB_DONE)
		pthread_cond_wait(&lazy_job.cond, &lazy_job.lock);
	lazy_job.state = JOB_IDLE;
	done = lazy_job.done;
	pthread_mutex_unlock(&lazy_job.lock);
	m->left -= done;
	lazy_helped += done;
}

/*
 * The second thread started, once the program runs, when the image is mapped (its copies
 * read from there) and $CRFS_LAZY_STREAMS is not 1.
 */
static void lazy_start_streamer(void)
{
	const char *env = getenv("CRFS_LAZY_STREAMS");
	pthread_t t;

	if ((env && !strcmp(env, "1")) || !lazy_map)
		return;
	if (!pthread_create(&t, NULL, lazy_streamer, NULL)) {
		pthread_detach(t);
		lazy_helper = 1;
	}
}

/* Where the span from page @p holding LAZY_BATCH pending pages (or the last) ends. */
static size_t lazy_span(const struct lazy_mm *m, size_t p)
{
	size_t n = 0;

	for (; p < m->nr && n < LAZY_BATCH; p++)
		n += m->pages[p].state == PAGE_PENDING;
	return p;
}

/*
 * The next run of pending pages of @m in address order copied in, and, by the second
 * thread, the span of the next LAZY_BATCH pending pages: 0, -EAGAIN, or fatal.
 */
static int lazy_stream(struct lazy_mm *m)
{
	size_t p, n, end = 0;
	int ret;

	while (m->cursor < m->nr && m->pages[m->cursor].state != PAGE_PENDING)
		m->cursor++;
	if (m->cursor == m->nr) {
		m->cursor = 0;	/* some were left for an event: again from the start */
		return 0;
	}
	p = m->cursor;
	if (lazy_helper) {	/* runs to LAZY_BATCH pages here, as many there */
		end = lazy_span(m, p);
		if (end < m->nr)
			lazy_post(m, end, lazy_span(m, end));
	}
	do {	/* never a look at the second thread's span */
		n = lazy_run(m, p, end && end - p < LAZY_BATCH ? end - p : LAZY_BATCH);
		ret = lazy_stream_run(m, p, n);
		for (p += n; p < end && m->pages[p].state != PAGE_PENDING; p++)
			;
	} while (!ret && p < end);
	if (end && end < m->nr)
		lazy_join(m);
	return ret;
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

	if (m->forked)	/* a restored process's own stays open until the end */
		close(m->uffd);
	free(m->ranges);
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

/* Every restored process killed: the tree's (its shared table) and those that wrote in. */
static void lazy_kill_tree(pid_t root)
{
	int k;

	kill(root, SIGKILL);
	for (k = 0; real_pid && k < nr_tasks; k++)
		if (real_pid[k] > 0)
			kill(real_pid[k], SIGKILL);
	for (k = 0; k < nr_lazy_procs; k++)
		kill(lazy_procs[k].pid, SIGKILL);
}

/*
 * A failure before every GO: the tree killed, then the device closed (the module kills
 * what the processes already let go forked), the failure reported, its end relayed.
 */
static void lazy_fail_early(pid_t root, int ret, const char *why)
{
	lazy_kill_tree(root);
	close(lazy_dev);
	fprintf(stderr, "crfs-restart: lazy: %s: %s\n", why, strerror(-ret));
	lazy_report("lazy", -ret, why);
	relay_wait(root);
}

/* How deep restored process @pid is in the image's tree (0: the root, or not found). */
static int lazy_depth(pid_t pid)
{
	int k, d = 0;

	for (k = 0; real_pid && k < nr_tasks && real_pid[k] != pid; k++)
		;
	if (!real_pid || k == nr_tasks)
		return 0;
	while (k > 0 && d < nr_tasks) {
		k = parent_of[k];
		d++;
	}
	return d;
}

static int deeper_first(const void *a, const void *b)
{
	int x = lazy_depth(((const struct lazy_proc *)a)->pid);
	int y = lazy_depth(((const struct lazy_proc *)b)->pid);

	return y - x;
}

/*
 * DONE for every restored process, the deepest first: the module lets the server ask for a
 * process only through ancestors it still lists (each DONE unlists one).
 */
static void lazy_done(void)
{
	struct crfs_lazy_args done = { .op = CRFS_LAZY_DONE };
	int k;

	qsort(lazy_procs, nr_lazy_procs, sizeof(lazy_procs[0]), deeper_first);
	for (k = 0; k < nr_lazy_procs; k++) {
		done.pid = lazy_procs[k].pid;
		ioctl(lazy_dev, CRFS_IOC_LAZY, &done);	/* fails if it has ended: nothing to do */
	}
}

/*
 * The pages served; then, all in: DONE, "resident" reported. A fatal error kills the
 * program, and closing the device first has the module kill everything it forked
 * before any userfaultfd of ours goes.
 */
static void lazy_finish(pid_t root)
{
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
		lazy_kill_tree(root);
		close(lazy_dev);
		fprintf(stderr, "crfs-restart: lazy: %s\n", strerror(-ret));
		lazy_report("lazy", -ret, "page server failed: program killed");
		return;
	}
	lazy_done();
	snprintf(reason, sizeof(reason),
		 "pid %d: %zu pages, %zu on fault, %zu by thread 2, %d forks", (int)root,
		 nr_lazy, lazy_faulted, lazy_helped, lazy_forks);
	if (nr_lazy_procs > 1)
		snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason),
			 ", %d processes", nr_lazy_procs);
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

/* The processes of the image that are restored (not zombies): each sends a userfaultfd. */
static int lazy_expected(void)
{
	int k, n = 0;

	if (nr_procs == 1)
		return 1;
	for (k = 0; k < nr_tasks; k++)
		n += leader_of[k] == k && !zombie[k];
	return n;
}

/*
 * The restored processes' userfaultfds taken from @sock while they restore, until the
 * report pipe @from ends (EOF: every process restored, 0) or brings a failure (1, @r).
 * -errno when a userfaultfd could not be taken (the tree is then killed).
 */
static int lazy_gather(int from, int sock, struct report *r)
{
	struct pollfd pfd[2] = { { .fd = from, .events = POLLIN },
				 { .fd = sock, .events = POLLIN } };
	int ret = 0, got = 0;

	while (!pfd[0].revents) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents) {
			got = lazy_recv_uffd(sock, MSG_DONTWAIT);
			if (got == 0 || (got < 0 && got != -EAGAIN))
				pfd[1].fd = -1;	/* EOF: every process restored, or a failure */
			if (got < 0 && got != -EAGAIN && !ret)
				ret = got;
		}
	}
	if (read_full(from, r, sizeof(*r)) == sizeof(*r))
		return 1;
	while (!ret && (got = lazy_recv_uffd(sock, MSG_DONTWAIT)) > 0)
		;
	if (!ret && got < 0 && got != -EAGAIN)
		ret = got;
	if (!ret && nr_lazy_procs != lazy_expected())
		ret = -EPROTO;
	return ret;
}

/* Each restored process: its ranges, then each registered and let go. 0, or -errno. */
static int lazy_start(int dev, const char **why)
{
	int k, ret = 0;

	*why = "cannot get the lazy ranges";
	for (k = 0; !ret && k < nr_lazy_procs; k++)
		ret = lazy_plan(dev, &lazy_procs[k]);
	if (!ret)
		*why = "cannot register the lazy ranges";
	for (k = 0; !ret && k < nr_mms; k++)
		ret = lazy_register(dev, lazy_mms[k]);
	return ret;
}

/* Test hook "max2" ($CRFS_LAZY_TEST): at most two processes served, a tree of more fails. */
static void lazy_test_limits(void)
{
	const char *test = getenv("CRFS_LAZY_TEST");

	if (test && !strcmp(test, "max2"))
		lazy_max_procs = 2;
}

/*
 * The parent of a lazily restored @root (and the tree it forks): its report passed on (a
 * failure), or every process's ranges registered, GO, the pages served; then the relay's
 * wait.
 */
static void lazy_serve(pid_t root, int from, int sock, int dev, int image)
{
	const char *why = "a restored process sent no userfaultfd";
	struct report r;
	char reason[96];
	int ret, k;

	prctl(PR_SET_DUMPABLE, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);	/* what it forks stays below us: see the module */
	signal(SIGPIPE, SIG_IGN);	/* the reader may stop after "restored" */
	lazy_image = image;
	lazy_dev = lazy_high_fd(dev);
	dev = lazy_dev;
	lazy_root = root;
	lazy_map_image();
	lazy_buf = aligned_alloc(PAGE, LAZY_BATCH * PAGE);
	ret = lazy_gather(from, sock, &r);
	close(sock);
	if (ret == 1) {
		close(dev);	/* not restored: its report passed on */
		close(image);
		lazy_report(r.stage, r.err, r.reason);
		relay_wait(root);
	}
	close(from);
	if (ret == -E2BIG)
		why = "more processes than --lazy serves";
	if (!ret)
		ret = lazy_buf ? lazy_start(dev, &why) : -ENOMEM;
	if (ret)
		lazy_fail_early(root, ret, why);
	snprintf(reason, sizeof(reason), "pid %d", (int)root);
	lazy_report("restored", 0, reason);
	lazy_start_populate();
	lazy_start_streamer();
	lazy_finish(root);
	if (report_fd >= 0)
		close(report_fd);
	for (k = 0; k < nr_mms; k++)
		if (lazy_mms[k]->forked)
			close(lazy_mms[k]->uffd);
	for (k = 0; k < nr_lazy_procs; k++)
		close(lazy_procs[k].uffd);
	close(image);
	relay_wait(root);
}
