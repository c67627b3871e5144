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
 * Not made, so refused by the module unless handed in with -i: listening sockets, bound
 * unconnected ones, a socket whose peer is not in the image or is a connection not yet
 * accepted. A connected socket's bound name is not given back. Counts and lengths are bounded here
 * (CRFS_UNIX_MAX_MSGS messages, CRFS_UNIX_MAX_DATA bytes) before anything is read.
 */
#define FILE_UNIX		112	/* ckpt_hdr_file.f_type */
#define UNIX_REC_LEN		216	/* struct crfs_hdr_file_unix */
#define UNIX_MAX		1024	/* sockets of one image */
#define UNIX_MAX_MSGS		4096	/* CRFS_UNIX_MAX_MSGS */
#define UNIX_MAX_DATA		(4 << 20)	/* CRFS_UNIX_MAX_DATA */
#define UNIX_LISTEN		10	/* TCP_LISTEN */
#define UNIX_CONNECTED		1	/* TCP_ESTABLISHED */

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
};

struct usock {
	int32_t objref;		/* its FILE */
	uint32_t f_flags;
	struct unix_rec r;
	off_t queue;		/* its BUFFER record, or 0 */
	int fd;			/* made here, or -1 */
};

static struct usock usocks[UNIX_MAX];
static int nr_usocks;

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
	if (u->r.nr_msgs > UNIX_MAX_MSGS || u->r.data_len > UNIX_MAX_DATA)
		unix_fail(EINVAL, "UNIX socket objref %d: %d messages queued", objref,
			  (int)u->r.nr_msgs);
	if (u->r.nr_msgs)
		u->queue = pos + len;
	nr_usocks++;
}

static void scan_unix(int fd)
{
	int32_t last_file = 0, obj[2];
	uint32_t hdr[2];
	off_t pos = 0;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_OBJREF && pread(fd, obj, sizeof(obj), pos + 8) == sizeof(obj)) {
			last_file = obj[0] == OBJ_FILE ? obj[1] : 0;
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
