// SPDX-License-Identifier: GPL-2.0
/*
 * CHECKPOINT of anon-inode files, as crfs/checkpoint/files.py and ckpt_dump.py write them:
 *   eventfd	EVENTFD FILE{count, flags 0}
 *   timerfd	CRFS_FILE_TIMERFD FILE{clockid, settime flags, remaining time, interval,
 *		unread expirations}
 *   signalfd	CRFS_FILE_SIGNALFD FILE{sigmask, O_NONBLOCK}
 *   epoll	EPOLL FILE, and after the table's last FILE_DESC its EPOLL_ITEMS
 *		[BUFFER{items by fd}]. A watch names its target by the fd it was added as
 *		and the target's inode: the file at that fd if of that inode, else (the
 *		fd closed or reused since) the one file of the table of that inode that
 *		some epoll watches (file->f_ep); none or several: the epoll is written
 *		CRFS_FILE_OPAQUE, as by crfs
 * Their state is private to fs/eventfd.c, fs/timerfd.c..., so it is read where /proc
 * reads it: the file's show_fdinfo(), into a buffer, parsed like the fdinfo text.
 */
#include <linux/fs.h>
#include <linux/list.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>

#include "crfs.h"

#define FDINFO_SIZE	(256 * 1024)	/* an epoll's text: ~4000 watches */
#define MAX_WATCHES	4096

struct ck_watch {
	struct file *target;	/* the table's reference */
	u64 data;
	u32 fd;
	u32 events;
};

struct ck_epoll {
	struct list_head node;
	s32 objref;
	u32 nr;
	struct ck_watch w[];
};

struct crfs_ck_anon {
	struct list_head epolls;	/* first written in this table, in that order */
	char *buf;			/* FDINFO_SIZE + 1 */
};

/* show_fdinfo() of @file into an->buf, NUL-terminated. */
static int fdinfo(struct crfs_ck_anon *an, struct file *file)
{
	struct seq_file m = { .buf = an->buf, .size = FDINFO_SIZE };

	if (!file->f_op->show_fdinfo)
		return -EOPNOTSUPP;
	file->f_op->show_fdinfo(&m, file);
	if (m.count >= m.size)
		return -E2BIG;
	an->buf[m.count] = '\0';
	return 0;
}

static const char *anon_name(struct file *file)
{
	return file->f_path.dentry->d_name.name;
}

static int write_eventfd(struct crfs_ckpt *ck, struct crfs_ck_anon *an,
			 struct file *file, int fd)
{
	struct ckpt_hdr_file_eventfd h = { 0 };

	if (sscanf(an->buf, "eventfd-count: %llx", &h.count) != 1)
		return crfs_ck_fail(ck, -EIO, "fd %d: the eventfd's count", fd);
	crfs_ck_fill_file(&h.common, file, CKPT_FILE_EVENTFD);
	return crfs_ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
}

static int write_timerfd(struct crfs_ckpt *ck, struct crfs_ck_anon *an,
			 struct file *file, int fd)
{
	struct crfs_hdr_file_timerfd h = { 0 };
	unsigned long long vs, vns, is, ins;

	if (sscanf(an->buf,
		   "clockid: %d ticks: %llu settime flags: %o it_value: (%llu, %llu) it_interval: (%llu, %llu)",
		   &h.clockid, &h.ticks, &h.tfd_flags, &vs, &vns, &is, &ins) != 7 ||
	    vs > KTIME_SEC_MAX || is > KTIME_SEC_MAX)
		return crfs_ck_fail(ck, -EIO, "fd %d: the timerfd's timer", fd);
	h.value_ns = vs * NSEC_PER_SEC + vns;
	h.interval_ns = is * NSEC_PER_SEC + ins;
	crfs_ck_fill_file(&h.common, file, CRFS_FILE_TIMERFD);
	return crfs_ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
}

static int write_signalfd(struct crfs_ckpt *ck, struct crfs_ck_anon *an,
			  struct file *file, int fd)
{
	struct crfs_hdr_file_signalfd h = { 0 };

	if (sscanf(an->buf, "sigmask: %llx", &h.sigmask) != 1)
		return crfs_ck_fail(ck, -EIO, "fd %d: the signalfd's mask", fd);
	h.sfd_flags = file->f_flags & O_NONBLOCK;
	crfs_ck_fill_file(&h.common, file, CRFS_FILE_SIGNALFD);
	return crfs_ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
}

static int cmp_watch(const void *a, const void *b)
{
	const struct ck_watch *x = a, *y = b;

	return (x->fd > y->fd) - (x->fd < y->fd);
}

/* The one file of the table of inode @ino that an epoll watches, or NULL. */
static struct file *watched_of(const struct crfs_ck_view *view, unsigned long ino)
{
	struct file *file, *found = NULL;
	u32 i;

	for (i = 0; (file = view->nth(view->table, i)); i++) {
		if (file_inode(file)->i_ino != ino || !READ_ONCE(file->f_ep) ||
		    file == found)
			continue;
		if (found)
			return NULL;	/* which one is not known */
		found = file;
	}
	return found;
}

/* One "tfd:" line; -ENOENT: its target is not known. */
static int parse_watch(const char *line, struct ck_watch *w,
		       const struct crfs_ck_view *view)
{
	unsigned long ino;
	long long pos;
	int tfd;

	if (sscanf(line, "tfd: %d events: %x data: %llx pos:%lli ino:%lx",
		   &tfd, &w->events, &w->data, &pos, &ino) != 5 || tfd < 0)
		return -EIO;
	w->fd = tfd;
	w->target = view->at(view->table, tfd);
	if (!w->target || file_inode(w->target)->i_ino != ino)
		w->target = watched_of(view, ino);
	return w->target ? 0 : -ENOENT;
}

/* The watch list of an epoll from its fdinfo text; -ENOENT: a target not in the table. */
static int parse_watches(struct crfs_ck_anon *an, struct ck_epoll **out,
			 const struct crfs_ck_view *view)
{
	const char *p = an->buf;
	struct ck_epoll *ep;
	u32 nr = 0;
	int ret;

	while ((p = strstr(p, "tfd:"))) {
		nr++;
		p += 4;
	}
	if (nr > MAX_WATCHES)
		return -E2BIG;
	ep = kvzalloc(struct_size(ep, w, nr), GFP_KERNEL);
	if (!ep)
		return -ENOMEM;
	for (p = an->buf; ep->nr < nr && (p = strstr(p, "tfd:")); p += 4) {
		ret = parse_watch(p, &ep->w[ep->nr], view);
		if (ret) {
			kvfree(ep);
			return ret;
		}
		ep->nr++;
	}
	sort(ep->w, ep->nr, sizeof(ep->w[0]), cmp_watch, NULL);
	*out = ep;
	return 0;
}

static int write_epoll(struct crfs_ckpt *ck, struct crfs_ck_anon *an,
		       struct file *file, int fd, s32 objref,
		       const struct crfs_ck_view *view)
{
	struct ckpt_hdr_file h = { 0 };
	struct ck_epoll *ep;
	int ret;

	ret = parse_watches(an, &ep, view);
	if (ret == -ENOENT)
		return 0;	/* written as an opaque file */
	if (ret)
		return crfs_ck_fail(ck, ret, "fd %d: the epoll's watches", fd);
	ep->objref = objref;
	list_add_tail(&ep->node, &an->epolls);
	crfs_ck_fill_file(&h, file, CKPT_FILE_EPOLL);
	ret = crfs_ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
	return ret ? ret : 1;
}

/*
 * The FILE record of anon-inode @file (its first fd @fd, FILE @objref): 1 when written,
 * 0 when it is of no kind written here (the caller writes it opaque), or an error.
 */
int crfs_ckpt_anon(struct crfs_ckpt *ck, struct crfs_ck_anon **anp,
		   struct file *file, int fd, s32 objref,
		   const struct crfs_ck_view *view)
{
	const char *name = anon_name(file);
	struct crfs_ck_anon *an = *anp;
	int ret;

	if (strcmp(name, "[eventfd]") && strcmp(name, "[timerfd]") &&
	    strcmp(name, "[signalfd]") && strcmp(name, "[eventpoll]"))
		return 0;
	if (!an) {
		an = kzalloc(sizeof(*an), GFP_KERNEL);
		if (!an)
			return -ENOMEM;
		INIT_LIST_HEAD(&an->epolls);
		*anp = an;
		an->buf = kvmalloc(FDINFO_SIZE + 1, GFP_KERNEL);
		if (!an->buf)
			return -ENOMEM;
	}
	ret = fdinfo(an, file);
	if (ret)
		return crfs_ck_fail(ck, ret == -E2BIG ? -EOPNOTSUPP : ret,
				    "fd %d: its fdinfo (%s)", fd, name);
	if (!strcmp(name, "[eventfd]"))
		ret = write_eventfd(ck, an, file, fd);
	else if (!strcmp(name, "[timerfd]"))
		ret = write_timerfd(ck, an, file, fd);
	else if (!strcmp(name, "[signalfd]"))
		ret = write_signalfd(ck, an, file, fd);
	else
		return write_epoll(ck, an, file, fd, objref, view);
	return ret ? ret : 1;
}

static int write_items(struct crfs_ckpt *ck, const struct ck_epoll *ep)
{
	struct ckpt_hdr_eventpoll_items h = {
		.epfile_objref = ep->objref,
		.num_items = ep->nr,
	};
	struct ckpt_eventpoll_item item = { 0 };
	u32 i;
	int ret;

	ret = crfs_ck_record(ck, CKPT_HDR_EPOLL_ITEMS, &h, sizeof(h));
	if (!ret && ep->nr)
		ret = crfs_ck_frame(ck, CKPT_HDR_BUFFER, ep->nr * sizeof(item));
	for (i = 0; !ret && i < ep->nr; i++) {
		item.data = ep->w[i].data;
		item.fd = ep->w[i].fd;
		item.events = ep->w[i].events;
		ret = crfs_ck_object(ck, (void *)((unsigned long)ep->w[i].target | 1),
				     &item.file_objref);
		if (!ret && item.file_objref < 0)	/* every fd was written */
			ret = crfs_ck_fail(ck, -EIO, "epoll fd %u: not written",
					   item.fd);
		if (!ret)
			ret = crfs_ck_write(ck, &item, sizeof(item));
	}
	return ret;
}

/* After the table's last FILE_DESC: EPOLL_ITEMS of each epoll first written in it. */
int crfs_ckpt_epoll_items(struct crfs_ckpt *ck, struct crfs_ck_anon *an)
{
	struct ck_epoll *ep;
	int ret;

	if (!an)
		return 0;
	list_for_each_entry(ep, &an->epolls, node) {
		ret = write_items(ck, ep);
		if (ret)
			return ret;
	}
	return 0;
}

void crfs_ckpt_anon_free(struct crfs_ck_anon *an)
{
	struct ck_epoll *ep, *tmp;

	if (!an)
		return;
	list_for_each_entry_safe(ep, tmp, &an->epolls, node)
		kvfree(ep);
	kvfree(an->buf);
	kfree(an);
}
