/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs-restart: the UNIX sockets of the image (CRFS_FILE_UNIX records), included by
 * crfs-restart.c after its anon-inode files.
 *
 * The root makes every socket of the image before it forks the tree, so that all the
 * processes hold the same sockets and each end of a pair is the same file in every process
 * (the module shares a file among processes by its objref; two pairs made by two processes
 * would not be connected). A pair: socketpair(2) of the record's type; the messages queued
 * for each end are sent through the other, one send(2) a message (a datagram keeps its
 * boundaries); then the ends are shut down as recorded and given their O_NONBLOCK. A
 * connected socket whose peer was closed: a pair whose other end is closed once the
 * queue is filled. An unconnected one: socket(2). Every process hands them all in
 * (CRFS_IOC_RESTART_FILES), and the module checks each against its record (crfs_socket.c).
 *
 * A listening socket, as CRIU does: first, a stale socket file at its path is unlinked
 * (anything else there is refused) and a new socket bound there; the file is then given
 * its recorded mode and owner through an O_PATH fd (EPERM stops the restart); a root
 * restarter does all that with the fs ids of the image's first credentials (its root
 * task's: task_fs_ids()), so nothing is done there the task could not do itself, a
 * non-root one as itself; an abstract name is bound as is; then listen(2) with its
 * backlog. A connection it had not accepted yet (CRFS_UNIX_ICON): a new socket connected
 * to it (with those fs ids too), whose other end waits in its accept queue again, in the
 * image's order. Before those, a pair whose one end bears the name of a listener of the
 * image and the other none (a connection made by connect and accept) is made that way
 * again, so the accepted end has its listener's name and the other end that peer name.
 *
 * Not made, so refused by the module unless handed in with -i: bound unconnected sockets,
 * a socket whose peer is not in the image. Another connected socket's bound name is not
 * given back. Counts and lengths are bounded here (CRFS_UNIX_MAX_MSGS messages,
 * CRFS_UNIX_MAX_DATA bytes) before anything is read.
 */
#include <stddef.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/un.h>

#define FILE_UNIX		112	/* ckpt_hdr_file.f_type */
#define UNIX_REC_LEN		216	/* struct crfs_hdr_file_unix */
#define UNIX_MAX		1024	/* sockets of one image */
#define UNIX_MAX_MSGS		4096	/* CRFS_UNIX_MAX_MSGS */
#define UNIX_MAX_DATA		(4 << 20)	/* CRFS_UNIX_MAX_DATA */
#define UNIX_LISTEN		10	/* TCP_LISTEN */
#define UNIX_CONNECTED		1	/* TCP_ESTABLISHED */
#define UNIX_ICON		0x1	/* CRFS_UNIX_ICON */
#define HDR_CRED		114	/* CKPT_HDR_CRED */
#define HDR_GROUPINFO		116	/* CKPT_HDR_GROUPINFO */
#define OBJ_GROUPINFO		15	/* CKPT_OBJ_GROUPINFO */
#define UNIX_MAX_GROUPS		256

struct unix_rec {		/* crfs_hdr_file_unix after its common 48 bytes */
	int32_t sock_objref;
	int32_t peer_objref;
	uint64_t ino;
	uint16_t family;
	uint16_t sock_type;
	uint32_t state;
	uint32_t shutdown;
	uint32_t backlog;
	uint32_t nr_msgs;
	uint32_t data_len;
	uint32_t addr_len;
	uint32_t flags;
	char addr[108];
	uint32_t mode;		/* a path-bound socket's file, 0: not recorded */
	uint32_t uid;
	uint32_t gid;
};
_Static_assert(sizeof(struct unix_rec) == UNIX_REC_LEN - FILE_HDR_LEN, "unix record");

struct usock {
	int32_t objref;		/* its FILE */
	uint32_t f_flags;
	struct unix_rec r;
	off_t queue;		/* its BUFFER record, or 0 */
	int fd;			/* made here, or -1 */
};

static struct usock usocks[UNIX_MAX];
static int nr_usocks;
static uint32_t bind_ids[2];	/* fsuid, fsgid of the image's first CRED */
static int have_bind_ids;
static gid_t group_ids[UNIX_MAX_GROUPS];	/* ... and its groups */
static int nr_group_ids;
static int32_t group_ref;
static gid_t saved_groups[UNIX_MAX_GROUPS];	/* the restarter's, meanwhile */
static int nr_saved_groups;

static void unix_fail(int err, const char *fmt, int a, int b)
{
	char why[96];

	snprintf(why, sizeof(why), fmt, a, b);
	fail("unix-sockets", err, why, UINT64_MAX, 0);
}

static struct usock *usock_of(int32_t sock_objref)
{
	int i;

	for (i = 0; i < nr_usocks; i++)
		if (usocks[i].r.sock_objref == sock_objref)
			return &usocks[i];
	return NULL;
}

/* A CRFS_FILE_UNIX record of FILE @objref at @pos, @len bytes: noted. */
static void note_unix(int fd, off_t pos, uint32_t len, int32_t objref)
{
	uint32_t f[3];	/* f_type, f_mode, f_flags */
	struct usock *u;

	if (objref <= 0 || len != UNIX_REC_LEN ||
	    pread(fd, f, sizeof(f), pos + 8) != sizeof(f) || f[0] != FILE_UNIX)
		return;	/* not ours; a bad length: the module says so */
	if (nr_usocks == UNIX_MAX)
		unix_fail(EOPNOTSUPP, "more than %d UNIX sockets", UNIX_MAX, 0);
	u = &usocks[nr_usocks];
	*u = (struct usock){ .objref = objref, .f_flags = f[2], .fd = -1 };
	if (pread(fd, &u->r, sizeof(u->r), pos + FILE_HDR_LEN) != sizeof(u->r))
		unix_fail(EINVAL, "a short UNIX socket record (objref %d)", objref, 0);
	if (u->r.nr_msgs > UNIX_MAX_MSGS || u->r.data_len > UNIX_MAX_DATA ||
	    u->r.addr_len > sizeof(u->r.addr))
		unix_fail(EINVAL, "UNIX socket objref %d: %d messages queued", objref,
			  (int)u->r.nr_msgs);
	if (u->r.nr_msgs)
		u->queue = pos + len;
	nr_usocks++;
}

/* A GROUPINFO of objref @ref at @pos: its groups kept (-1: more than 256, or short). */
static void note_groups(int fd, off_t pos, uint32_t len, int32_t ref)
{
	uint32_t n;

	group_ref = ref;
	nr_group_ids = -1;
	if (pread(fd, &n, sizeof(n), pos + 8) == sizeof(n) && n <= UNIX_MAX_GROUPS &&
	    len >= 12 + 4 * n && pread(fd, group_ids, 4 * n, pos + 12) == (ssize_t)(4 * n))
		nr_group_ids = (int)n;
}

/* The image's first CRED at @pos: fsuid @20, fsgid @36, groupinfo_ref @44. */
static void note_cred(int fd, off_t pos, uint32_t len)
{
	int32_t ref;

	if (len < 48 || pread(fd, &bind_ids[0], 4, pos + 20) != 4 ||
	    pread(fd, &bind_ids[1], 4, pos + 36) != 4 || pread(fd, &ref, 4, pos + 44) != 4)
		return;
	have_bind_ids = 1;
	if (ref != group_ref)
		nr_group_ids = 0;	/* objects nest before their CRED: none met */
}

static void scan_unix(int fd)
{
	int32_t last_file = 0, last_obj[2] = { 0, 0 }, obj[2];
	uint32_t hdr[2];
	off_t pos = 0;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_GROUPINFO && !have_bind_ids && last_obj[0] == OBJ_GROUPINFO)
			note_groups(fd, pos, hdr[1], last_obj[1]);
		if (hdr[0] == HDR_CRED && !have_bind_ids)
			note_cred(fd, pos, hdr[1]);
		last_obj[0] = 0;
		if (hdr[0] == HDR_OBJREF && pread(fd, obj, sizeof(obj), pos + 8) == sizeof(obj)) {
			last_file = obj[0] == OBJ_FILE ? obj[1] : 0;
			last_obj[0] = obj[0];
			last_obj[1] = obj[1];
		} else if (hdr[0] == HDR_FILE) {
			note_unix(fd, pos, hdr[1], last_file);
			last_file = 0;
		}
		pos += hdr[1];
	}
}

/* Sends the messages queued for @u through @through, the other end of its pair. */
static void fill_unix(int fd, const struct usock *u, int through)
{
	uint32_t hdr[2], i, len, off;
	char *buf;

	if (!u->queue)
		return;
	if (pread(fd, hdr, sizeof(hdr), u->queue) != sizeof(hdr) || hdr[0] != HDR_BUFFER ||
	    hdr[1] - 8 != 4 * u->r.nr_msgs + u->r.data_len)
		unix_fail(EINVAL, "UNIX socket objref %d: its queue is not a BUFFER of %d bytes",
			  u->objref, (int)(4 * u->r.nr_msgs + u->r.data_len));
	buf = malloc(hdr[1] - 8);
	if (!buf)
		unix_fail(ENOMEM, "UNIX socket objref %d: %d bytes", u->objref, (int)hdr[1]);
	if (pread(fd, buf, hdr[1] - 8, u->queue + 8) != (ssize_t)(hdr[1] - 8))
		unix_fail(EINVAL, "UNIX socket objref %d: a short queue", u->objref, 0);
	off = 4 * u->r.nr_msgs;
	for (i = 0; i < u->r.nr_msgs; i++) {
		memcpy(&len, buf + 4 * i, sizeof(len));
		if (len > u->r.data_len - (off - 4 * u->r.nr_msgs))
			unix_fail(EINVAL, "UNIX socket objref %d: message %d too long",
				  u->objref, (int)i);
		if (send(through, buf + off, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
			unix_fail(errno ? errno : EMSGSIZE,
				  "UNIX socket objref %d: message %d not queued",
				  u->objref, (int)i);
		off += len;
	}
	free(buf);
}

static void finish_unix(struct usock *u)
{
	if ((u->r.shutdown & 2) && shutdown(u->fd, SHUT_WR))	/* SEND_SHUTDOWN */
		unix_fail(errno, "UNIX socket objref %d: not shut down", u->objref, 0);
	if ((u->r.shutdown & 1) && shutdown(u->fd, SHUT_RD))	/* RCV_SHUTDOWN */
		unix_fail(errno, "UNIX socket objref %d: not shut down", u->objref, 0);
	if ((u->f_flags & O_NONBLOCK) && fcntl(u->fd, F_SETFL, O_NONBLOCK))
		unix_fail(errno, "UNIX socket objref %d: O_NONBLOCK", u->objref, 0);
}

/* @u and its peer @p (NULL: a peer closed) as a socketpair, with their queues. */
static void make_pair(int fd, struct usock *u, struct usock *p)
{
	int sv[2];

	if (socketpair(AF_UNIX, u->r.sock_type | SOCK_CLOEXEC, 0, sv))
		unix_fail(errno, "UNIX socket objref %d: no socketpair", u->objref, 0);
	u->fd = sv[0];
	fill_unix(fd, u, sv[1]);
	if (!p) {
		close(sv[1]);
		finish_unix(u);
		return;
	}
	p->fd = sv[1];
	fill_unix(fd, p, sv[0]);
	finish_unix(u);
	finish_unix(p);
}

/* @u's address as a sockaddr_un; its length. */
static socklen_t unix_addr(const struct usock *u, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, u->r.addr, u->r.addr_len);
	return offsetof(struct sockaddr_un, sun_path) + u->r.addr_len;
}

/* The stale file at @path unlinked (a socket only) and @u bound there. */
static int bind_path(struct usock *u, const char *path, const struct sockaddr_un *sa,
		     socklen_t len)
{
	struct stat st;

	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode)) {
		errno = EEXIST;
		return -1;
	}
	if (unlink(path) && errno != ENOENT)
		return -1;
	return bind(u->fd, (const struct sockaddr *)sa, len);
}

/* The recorded mode and owner given to the socket file at @path, not following a link. */
static void own_file(const struct usock *u, const char *path)
{
	char proc[40];
	struct stat st;
	int pfd;

	if (!u->r.mode)
		return;
	pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 || fstat(pfd, &st) || !S_ISSOCK(st.st_mode))
		unix_fail(pfd < 0 ? errno : EEXIST, "UNIX socket objref %d: its file is gone",
			  u->objref, 0);
	if ((st.st_uid != u->r.uid || st.st_gid != u->r.gid) &&
	    fchownat(pfd, "", u->r.uid, u->r.gid, AT_EMPTY_PATH))
		unix_fail(errno, "UNIX socket objref %d: its file not given to uid %d",
			  u->objref, (int)u->r.uid);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	if (chmod(proc, u->r.mode & 07777))
		unix_fail(errno, "UNIX socket objref %d: its file not given mode %o",
			  u->objref, (int)(u->r.mode & 07777));
	close(pfd);
}

/*
 * A root restarter takes the fs ids and groups of the image's first credentials (@on) and
 * gives them back: a fsuid not 0 drops CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE from its
 * effective set meanwhile, so paths are resolved, files made, chowned and chmodded as the
 * task could.
 */
static void task_fs_ids(int on)
{
	if (!have_bind_ids || geteuid() != 0)
		return;
	if (on) {
		nr_saved_groups = getgroups(UNIX_MAX_GROUPS, saved_groups);
		if (nr_group_ids < 0)
			errno = EOPNOTSUPP;
		if (nr_saved_groups < 0 || nr_group_ids < 0 || setgroups(nr_group_ids, group_ids))
			unix_fail(errno, "the image's %d groups not taken", nr_group_ids, 0);
		setfsgid(bind_ids[1]);
		setfsuid(bind_ids[0]);
	} else {
		setfsuid(geteuid());
		setfsgid(getegid());
		if (setgroups(nr_saved_groups, saved_groups))
			unix_fail(errno, "the restarter's %d groups not back", nr_saved_groups, 0);
	}
}

/* A listening socket at its address, its file owned and chmodded (task_fs_ids()). */
static void make_listener(struct usock *u)
{
	struct sockaddr_un sa;
	socklen_t len = unix_addr(u, &sa);

	if (!u->r.addr_len || (u->r.addr[0] && (u->r.addr[0] != '/' ||
			       !memchr(u->r.addr, 0, u->r.addr_len))))
		unix_fail(EOPNOTSUPP, "UNIX socket objref %d: a listener not at an absolute path",
			  u->objref, 0);
	u->fd = socket(AF_UNIX, u->r.sock_type | SOCK_CLOEXEC, 0);
	if (u->fd < 0)
		unix_fail(errno, "UNIX socket objref %d: no socket", u->objref, 0);
	task_fs_ids(1);
	if (u->r.addr[0] ? bind_path(u, sa.sun_path, &sa, len) :
	    bind(u->fd, (struct sockaddr *)&sa, len))
		unix_fail(errno, "UNIX socket objref %d: not bound at its address", u->objref, 0);
	if (u->r.addr[0])
		own_file(u, sa.sun_path);
	task_fs_ids(0);
	if (listen(u->fd, (int)(u->r.backlog & 0x7fffffff)))
		unix_fail(errno, "UNIX socket objref %d: not listening", u->objref, 0);
	finish_unix(u);
}

/* A connection its listener had not accepted: connected to it again. */
static void make_icon(struct usock *u)
{
	struct usock *l = usock_of(u->r.peer_objref);
	struct sockaddr_un sa;
	socklen_t len;

	if (!l || l->r.state != UNIX_LISTEN || l->fd < 0 || l->r.sock_type != u->r.sock_type ||
	    u->queue)
		unix_fail(EINVAL, "UNIX socket objref %d: no listener objref %d for it",
			  u->objref, u->r.peer_objref);
	len = unix_addr(l, &sa);
	u->fd = socket(AF_UNIX, u->r.sock_type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	task_fs_ids(1);		/* the module checks it reached @l (crfs_socket.c) */
	if (u->fd < 0 || connect(u->fd, (struct sockaddr *)&sa, len))
		unix_fail(errno, "UNIX socket objref %d: not connected to listener objref %d",
			  u->objref, l->objref);
	task_fs_ids(0);
	if (fcntl(u->fd, F_SETFL, u->f_flags & O_NONBLOCK))
		unix_fail(errno, "UNIX socket objref %d: its flags", u->objref, 0);
}

/* The listener made at @u's address, of its type: an accepted socket's, or NULL. */
static struct usock *listener_of(const struct usock *u)
{
	int k;

	for (k = 0; k < nr_usocks; k++)
		if (usocks[k].r.state == UNIX_LISTEN && usocks[k].fd >= 0 &&
		    usocks[k].r.sock_type == u->r.sock_type &&
		    usocks[k].r.addr_len == u->r.addr_len &&
		    !memcmp(usocks[k].r.addr, u->r.addr, u->r.addr_len))
			return &usocks[k];
	return NULL;
}

/*
 * A pair made by connect and accept: @p connected to @l again and the connection accepted
 * as @u, so both have their names (@u its listener's, @p's peer that); then their queues.
 * Someone else's connection accepted meanwhile would not be @p's peer: the module refuses.
 */
static void make_accepted(int fd, struct usock *u, struct usock *p, const struct usock *l)
{
	struct sockaddr_un sa;
	socklen_t len = unix_addr(l, &sa);
	int flags = fcntl(l->fd, F_GETFL);

	p->fd = socket(AF_UNIX, p->r.sock_type | SOCK_CLOEXEC, 0);
	task_fs_ids(1);
	if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&sa, len))
		unix_fail(errno, "UNIX socket objref %d: not connected to listener objref %d",
			  p->objref, l->objref);
	task_fs_ids(0);
	if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK))	/* never waits */
		unix_fail(errno, "UNIX socket objref %d: its flags", l->objref, 0);
	u->fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (u->fd < 0 || fcntl(l->fd, F_SETFL, flags))
		unix_fail(errno, "UNIX socket objref %d: not accepted by listener objref %d",
			  u->objref, l->objref);
	fill_unix(fd, u, p->fd);
	fill_unix(fd, p, u->fd);
	finish_unix(u);
	finish_unix(p);
}

/* Connected pairs whose one end has a listener's name and the other none: accepted. */
static void make_accepted_pairs(int fd)
{
	struct usock *u, *p, *l;
	int k;

	for (k = 0; k < nr_usocks; k++) {
		u = &usocks[k];
		if (u->fd >= 0 || u->r.family != AF_UNIX || u->r.state != UNIX_CONNECTED ||
		    (u->r.flags & UNIX_ICON) || !u->r.addr_len || u->r.sock_type == SOCK_DGRAM)
			continue;
		p = u->r.peer_objref ? usock_of(u->r.peer_objref) : NULL;
		l = listener_of(u);
		if (p && l && p->fd < 0 && p->r.peer_objref == u->r.sock_objref &&
		    p->r.sock_type == u->r.sock_type && !p->r.addr_len && !(p->r.flags & UNIX_ICON))
			make_accepted(fd, u, p, l);
	}
}

static void make_lone(struct usock *u)
{
	u->fd = socket(AF_UNIX, u->r.sock_type | SOCK_CLOEXEC, 0);
	if (u->fd >= 0)
		finish_unix(u);
}

/* The root, before the tree is forked: every socket of the image it can make. */
static void make_unix_sockets(int fd)
{
	struct usock *u, *p;
	int k;

	if (no_anon)
		return;
	scan_unix(fd);
	for (k = 0; k < nr_usocks; k++)
		if (usocks[k].r.family == AF_UNIX && usocks[k].r.state == UNIX_LISTEN)
			make_listener(&usocks[k]);
	make_accepted_pairs(fd);	/* before the listeners' queues fill again */
	for (k = 0; k < nr_usocks; k++)
		if (usocks[k].r.family == AF_UNIX && (usocks[k].r.flags & UNIX_ICON))
			make_icon(&usocks[k]);
	for (k = 0; k < nr_usocks; k++) {
		u = &usocks[k];
		if (u->fd >= 0 || u->r.family != AF_UNIX || u->r.state == UNIX_LISTEN ||
		    (u->r.state != UNIX_CONNECTED && u->r.addr_len))
			continue;	/* the caller's to hand in (-i) */
		p = u->r.peer_objref ? usock_of(u->r.peer_objref) : NULL;
		if (p && p->r.peer_objref == u->r.sock_objref && p->r.sock_type == u->r.sock_type)
			make_pair(fd, u, p);
		else if (!u->r.peer_objref && u->r.state == UNIX_CONNECTED &&
			 u->r.sock_type != SOCK_DGRAM && u->r.shutdown == 3)
			make_pair(fd, u, NULL);	/* its peer was closed */
		else if (!u->r.peer_objref && u->r.state != UNIX_CONNECTED && !u->queue)
			make_lone(u);
		if (u->fd < 0 && !u->r.peer_objref && u->r.state != UNIX_CONNECTED)
			unix_fail(errno ? errno : EINVAL, "UNIX socket objref %d: not made",
				  u->objref, 0);
	}
}

/* Each process: every socket made, handed in (the module checks pairs by both ends). */
static void hand_unix_sockets(void)
{
	int k;

	for (k = 0; k < nr_usocks; k++) {
		if (usocks[k].fd < 0)
			continue;
		if (nr_handed == CRFS_MAX_HANDED)
			unix_fail(EOPNOTSUPP, "more than %d files to hand in", CRFS_MAX_HANDED, 0);
		handed[nr_handed++] = (struct crfs_handed_file){ .objref = usocks[k].objref,
								 .fd = usocks[k].fd };
	}
}
