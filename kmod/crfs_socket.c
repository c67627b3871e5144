// SPDX-License-Identifier: GPL-2.0
/*
 * UNIX sockets of a file table (CRFS_FILE_UNIX): socketpairs of the three types with the
 * messages queued in them, a socket whose peer was closed, an unconnected socket, a
 * listening socket and the connections it has not accepted yet (CRFS_UNIX_ICON).
 *
 * As for the anon-inode files (crfs_anonfd.c), the restarter makes them in user space
 * (socketpair(2), its peer's queued messages sent back through the other end, shutdown(2);
 * a listener bound again at its address and listening, each connection not accepted yet
 * connected to it again) and hands them in by objref; this file checks each is what its
 * record says:
 *
 *   copy-in:	the record's length and fields, each bounded (CRFS_UNIX_MAX_MSGS messages,
 *		CRFS_UNIX_MAX_DATA bytes, CRFS_UNIX_ADDR_MAX), and its BUFFER of message
 *		lengths and bytes, whose lengths must add up
 *   validate:	the handed file is an AF_UNIX socket of the record's type, shutdown bits
 *		and queue (messages and bytes); when its peer's FILE is handed in too, the
 *		kernel's peer is that file's socket; a peer closed in the image is closed; a
 *		listener listens at the record's address; a connection not accepted yet
 *		waits in the queue of the listener handed for its peer_objref
 *   act:	crfs_files.c installs it like the anon files
 *
 * Not restored (the caller may hand them in, -i, as before): bound unconnected sockets,
 * a socket whose peer is outside the image; other families. The restarter gives an
 * accepted socket its listener's name by accepting it again; other connected sockets'
 * bound names are not given back.
 *
 * CHECKPOINT writes the same record from the socket itself: its peer (unix_peer_get()),
 * address, shutdown bits, its socket file's mode and owner, and the bytes of its receive
 * queue copied under the queue's lock (not consumed), refusing a queue that carries fds
 * (SCM_RIGHTS). A listener's objref is keyed by its unix_address, which the embryo socket
 * of each connection it has not accepted shares: the connecting socket's peer_objref is
 * then the listener's, with CRFS_UNIX_ICON.
 */
#include <linux/file.h>
#include <linux/net.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/un.h>
#include <net/af_unix.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "crfs.h"

#define SHUTDOWN_BITS	(RCV_SHUTDOWN | SEND_SHUTDOWN)

/* ---------------------------------------------------------------- copy-in */

static bool good_type(u32 type)
{
	return type == SOCK_STREAM || type == SOCK_DGRAM || type == SOCK_SEQPACKET;
}

static bool good_state(u32 state)
{
	return state == TCP_ESTABLISHED || state == TCP_CLOSE || state == TCP_LISTEN;
}

/* A listener, a connection not accepted yet, a socket file's mode: consistent. */
static bool good_ext(const struct crfs_hdr_file_unix *h)
{
	bool icon = h->flags & CRFS_UNIX_ICON;

	if ((h->flags & ~CRFS_UNIX_ICON) || (h->mode && (h->mode & S_IFMT) != S_IFSOCK))
		return false;
	if (h->state == TCP_LISTEN && (h->sock_type == SOCK_DGRAM || !h->addr_len ||
				       h->nr_msgs || h->peer_objref))
		return false;
	return !icon || (h->state == TCP_ESTABLISHED && h->sock_type != SOCK_DGRAM &&
			 h->peer_objref > 0 && !h->nr_msgs && !h->shutdown);
}

static int check_fields(struct crfs_ctx *ctx, const struct crfs_rec *rec,
			const struct crfs_hdr_file_unix *h)
{
	if (h->family != AF_UNIX)
		return crfs_image_fail(ctx->img, rec, "socket of family %u: only AF_UNIX",
				       h->family);
	if (!good_type(h->sock_type) || !good_state(h->state) ||
	    (h->shutdown & ~SHUTDOWN_BITS))
		return crfs_image_fail(ctx->img, rec, "UNIX socket type %u, state %u, shutdown %#x",
				       h->sock_type, h->state, h->shutdown);
	if (h->sock_objref <= 0 || h->peer_objref < 0 || h->peer_objref == h->sock_objref)
		return crfs_image_fail(ctx->img, rec, "UNIX socket objref %d, peer %d",
				       h->sock_objref, h->peer_objref);
	if (h->addr_len > CRFS_UNIX_ADDR_MAX || h->nr_msgs > CRFS_UNIX_MAX_MSGS ||
	    h->data_len > CRFS_UNIX_MAX_DATA || (h->data_len && !h->nr_msgs))
		return crfs_image_fail(ctx->img, rec,
				       "UNIX socket addr_len %u, %u messages of %u bytes",
				       h->addr_len, h->nr_msgs, h->data_len);
	if (!good_ext(h))
		return crfs_image_fail(ctx->img, rec,
				       "UNIX socket state %u, flags %#x, mode %#o, peer %d, %u messages",
				       h->state, h->flags, h->mode, h->peer_objref, h->nr_msgs);
	return 0;
}

/* The BUFFER of @h->nr_msgs lengths and their bytes: the lengths add up to data_len. */
static int load_queue(struct crfs_ctx *ctx, const struct crfs_hdr_file_unix *h)
{
	struct crfs_rec rec;
	u32 i, len;
	u64 sum = 0;
	int ret;

	ret = crfs_expect(ctx, &rec, CKPT_HDR_BUFFER);
	if (ret)
		return ret;
	if (rec.len - sizeof(struct ckpt_hdr) != 4ULL * h->nr_msgs + h->data_len)
		return crfs_image_fail(ctx->img, &rec, "BUFFER of %u bytes for %u messages of %u",
				       rec.len, h->nr_msgs, h->data_len);
	for (i = 0; i < h->nr_msgs; i++) {
		ret = crfs_image_read(ctx->img, rec.pos + sizeof(struct ckpt_hdr) + 4 * i,
				      &len, sizeof(len));
		if (ret)
			return ret;
		sum += len;
	}
	if (sum != h->data_len)
		return crfs_image_fail(ctx->img, &rec, "message lengths add to %llu, not %u",
				       sum, h->data_len);
	return 0;
}

/* A CRFS_FILE_UNIX record and its queue. */
int crfs_unix_load(struct crfs_ctx *ctx, struct crfs_file *file,
		   const struct crfs_rec *rec)
{
	struct crfs_hdr_file_unix *h;
	int ret;

	if (rec->len != sizeof(*h))
		return crfs_image_fail(ctx->img, rec, "UNIX socket FILE of %u bytes, expected %zu",
				       rec->len, sizeof(*h));
	if ((file->h.f_flags & O_ACCMODE) != O_RDWR)
		return crfs_image_fail(ctx->img, rec, "UNIX socket FILE not O_RDWR");
	h = kmalloc(sizeof(*h), GFP_KERNEL_ACCOUNT);
	if (!h)
		return -ENOMEM;
	file->unix_h = h;
	ret = crfs_image_body(ctx->img, rec, h, sizeof(*h));
	if (!ret)
		ret = check_fields(ctx, rec, h);
	if (!ret && h->nr_msgs)
		ret = load_queue(ctx, h);
	return ret;
}

/* ---------------------------------------------------------------- validate */

/* The FILE whose socket is @sock_objref, or NULL. */
static const struct crfs_file *file_of_sock(struct crfs_plan *plan, s32 sock_objref,
					    unsigned long *objref)
{
	struct crfs_object *obj;
	unsigned long index;

	xa_for_each(&plan->objects, index, obj) {
		cond_resched();
		if (obj->objtype == CKPT_OBJ_FILE && obj->ready && obj->file->unix_h &&
		    obj->file->unix_h->sock_objref == sock_objref) {
			*objref = index;
			return obj->file;
		}
	}
	return NULL;
}

/* A connected stream or seqpacket socket whose peer was closed: both ways shut. */
static bool peer_closed(const struct crfs_hdr_file_unix *h)
{
	return !h->peer_objref && h->state == TCP_ESTABLISHED && h->sock_type != SOCK_DGRAM &&
	       h->shutdown == SHUTDOWN_BITS;
}

/*
 * A socket of the image the restarter does not make, which the caller may hand in (-i):
 * bound and unconnected, connected to a socket outside the image (its peer's FILE is not
 * in it, or it has none).
 */
bool crfs_unix_outside(struct crfs_plan *plan, const struct crfs_file *file)
{
	const struct crfs_hdr_file_unix *h = file->unix_h;
	unsigned long objref;

	if (!h || h->state == TCP_LISTEN)
		return false;
	if (h->state != TCP_ESTABLISHED && h->addr_len)
		return true;
	if (h->peer_objref)
		return !file_of_sock(plan, h->peer_objref, &objref);
	return h->state == TCP_ESTABLISHED && !peer_closed(h);
}

/* The messages and bytes queued for @sk. */
static void queue_of(struct sock *sk, u32 *msgs, u64 *bytes)
{
	struct sk_buff *skb;

	*msgs = 0;
	*bytes = 0;
	spin_lock(&sk->sk_receive_queue.lock);
	skb_queue_walk(&sk->sk_receive_queue, skb) {
		(*msgs)++;
		*bytes += skb->len - UNIXCB(skb).consumed;
	}
	spin_unlock(&sk->sk_receive_queue.lock);
}

static int check_peer(struct crfs_plan *plan, struct crfs_image *img, struct sock *sk,
		      const struct crfs_hdr_file_unix *h, int fd)
{
	struct sock *peer = unix_peer_get(sk);
	const struct crfs_file *other = NULL;
	struct file *theirs = NULL;
	unsigned long objref;
	int ret = 0;

	if (h->peer_objref)
		other = file_of_sock(plan, h->peer_objref, &objref);
	if (other)
		theirs = crfs_handed_file(plan, objref);
	if (other && !theirs)
		ret = crfs_image_fail(img, NULL, "handed fd %d: its peer objref %lu not handed in",
				      fd, objref);
	else if (theirs && (!sock_from_file(theirs) || sock_from_file(theirs)->sk != peer))
		ret = crfs_image_fail(img, NULL, "handed fd %d: its peer is not objref %lu's",
				      fd, objref);
	else if (!h->peer_objref && h->state == TCP_ESTABLISHED && peer &&
		 !sock_flag(peer, SOCK_DEAD))
		ret = crfs_image_fail(img, NULL, "handed fd %d: its peer is not closed", fd);
	if (theirs)
		fput(theirs);
	if (peer)
		sock_put(peer);
	return ret;
}

/* The address @sk is bound to: the record's. */
static bool same_addr(struct sock *sk, const struct crfs_hdr_file_unix *h)
{
	/* pairs with the release in unix_bind(), as unix_getname() reads it */
	struct unix_address *addr = smp_load_acquire(&unix_sk(sk)->addr);

	return addr && addr->len == offsetof(struct sockaddr_un, sun_path) + h->addr_len &&
	       !memcmp(addr->name->sun_path, h->addr, h->addr_len);
}

static struct unix_address *listener_addr(struct sock *sk)
{
	/* pairs with the release in unix_bind() */
	return smp_load_acquire(&unix_sk(sk)->addr);
}

/* A connection not accepted yet: its peer an embryo of the listener handed for it. */
static int check_icon(struct crfs_plan *plan, struct crfs_image *img, struct sock *sk,
		      const struct crfs_hdr_file_unix *h, int fd)
{
	struct sock *peer = unix_peer_get(sk);
	struct file *theirs = NULL;
	struct socket *lsock;
	unsigned long objref;
	int ret = 0;

	if (file_of_sock(plan, h->peer_objref, &objref))
		theirs = crfs_handed_file(plan, objref);
	lsock = theirs ? sock_from_file(theirs) : NULL;
	if (lsock && lsock->sk && peer && !READ_ONCE(peer->sk_socket))
		/* the embryo's address is its listener's (unix_stream_connect()) */
		ret = smp_load_acquire(&unix_sk(peer)->addr) != listener_addr(lsock->sk);
	else
		ret = 1;
	if (ret)
		ret = crfs_image_fail(img, NULL,
				      "handed fd %d: not a connection waiting on listener objref %d",
				      fd, h->peer_objref);
	if (theirs)
		fput(theirs);
	if (peer)
		sock_put(peer);
	return ret;
}

/* The file handed in for the UNIX socket @cf: what its record says. */
int crfs_unix_check(struct crfs_plan *plan, struct crfs_image *img, struct file *file,
		    const struct crfs_file *cf, int fd)
{
	const struct crfs_hdr_file_unix *h = cf->unix_h;
	struct socket *sock = sock_from_file(file);
	struct sock *sk = sock ? sock->sk : NULL;
	u64 bytes;
	u32 msgs;

	if (!sk || sk->sk_family != AF_UNIX || sk->sk_type != h->sock_type)
		return crfs_image_fail(img, NULL, "handed fd %d is not a UNIX socket of type %u",
				       fd, h->sock_type);
	if (h->state == TCP_LISTEN) {
		if (READ_ONCE(sk->sk_state) != TCP_LISTEN || !same_addr(sk, h))
			return crfs_image_fail(img, NULL,
					       "handed fd %d: not listening at its address", fd);
		return 0;
	}
	if ((READ_ONCE(sk->sk_shutdown) & SHUTDOWN_BITS) != h->shutdown)
		return crfs_image_fail(img, NULL, "handed fd %d: shutdown %#x, not %#x", fd,
				       READ_ONCE(sk->sk_shutdown), h->shutdown);
	queue_of(sk, &msgs, &bytes);
	if (bytes != h->data_len ||
	    (h->sock_type != SOCK_STREAM && msgs != h->nr_msgs))
		return crfs_image_fail(img, NULL,
				       "handed fd %d: %u messages of %llu bytes queued, not %u of %u",
				       fd, msgs, bytes, h->nr_msgs, h->data_len);
	if (h->flags & CRFS_UNIX_ICON)
		return check_icon(plan, img, sk, h, fd);
	return check_peer(plan, img, sk, h, fd);
}

/* ---------------------------------------------------------------- CHECKPOINT */

struct unix_ck {
	u32 *lens;			/* CRFS_UNIX_MAX_MSGS */
	u8 *data;			/* CRFS_UNIX_MAX_DATA */
};

/* The queue of @sk into @q and @h (nr_msgs, data_len), not consumed; -E2BIG, -EBADF. */
static int copy_queue(struct sock *sk, struct crfs_hdr_file_unix *h, struct unix_ck *q)
{
	struct sk_buff *skb;
	u32 len;
	int ret = 0;

	spin_lock(&sk->sk_receive_queue.lock);
	skb_queue_walk(&sk->sk_receive_queue, skb) {
		len = skb->len - UNIXCB(skb).consumed;
		if (UNIXCB(skb).fp) {
			ret = -EBADF;
			break;
		}
		if (h->nr_msgs == CRFS_UNIX_MAX_MSGS || len > CRFS_UNIX_MAX_DATA - h->data_len) {
			ret = -E2BIG;
			break;
		}
		ret = skb_copy_bits(skb, UNIXCB(skb).consumed, q->data + h->data_len, len);
		if (ret)
			break;
		if (h->sock_type == SOCK_STREAM && h->nr_msgs)
			q->lens[0] += len;	/* a stream's bytes: one message */
		else
			q->lens[h->nr_msgs++] = len;
		h->data_len += len;
	}
	spin_unlock(&sk->sk_receive_queue.lock);
	return ret;
}

/* The mode and owner of the file a path-bound @sk made (an accepted socket: its listener's). */
static void fill_file(struct sock *sk, struct crfs_hdr_file_unix *h)
{
	struct dentry *dentry = unix_sk(sk)->path.dentry;	/* set once, at bind */
	struct inode *inode = dentry ? d_inode(dentry) : NULL;

	if (!inode)
		return;
	h->mode = inode->i_mode;
	h->uid = from_kuid_munged(current_user_ns(), inode->i_uid);
	h->gid = from_kgid_munged(current_user_ns(), inode->i_gid);
}

/*
 * The objref key of @peer, the peer of a stream or seqpacket socket: an embryo (no socket
 * yet: a connection its listener has not accepted) is keyed by its address, which is its
 * listener's, and marks @h CRFS_UNIX_ICON; -EAGAIN if bytes were sent into it.
 */
static int peer_key(struct sock *peer, struct crfs_hdr_file_unix *h, void **key)
{
	*key = peer;
	if (h->sock_type == SOCK_DGRAM || READ_ONCE(peer->sk_socket))
		return 0;
	/* pairs with the release in unix_stream_connect() */
	*key = smp_load_acquire(&unix_sk(peer)->addr);
	if (!*key || skb_queue_len(&peer->sk_receive_queue))
		return -EAGAIN;
	h->flags |= CRFS_UNIX_ICON;
	return 0;
}

static int fill_unix(struct crfs_ckpt *ck, struct sock *sk, struct crfs_hdr_file_unix *h)
{
	struct sock *peer = unix_peer_get(sk);
	struct unix_address *addr;
	void *key;
	int ret;

	/* pairs with the release in unix_bind(), as unix_getname() reads it */
	addr = smp_load_acquire(&unix_sk(sk)->addr);
	h->family = AF_UNIX;
	h->sock_type = sk->sk_type;
	h->state = READ_ONCE(sk->sk_state);
	h->shutdown = READ_ONCE(sk->sk_shutdown) & SHUTDOWN_BITS;
	h->ino = sock_i_ino(sk);
	if (h->state == TCP_LISTEN)
		h->backlog = READ_ONCE(sk->sk_max_ack_backlog);
	if (addr && addr->len > offsetof(struct sockaddr_un, sun_path)) {
		h->addr_len = min_t(u32, addr->len - offsetof(struct sockaddr_un, sun_path),
				    CRFS_UNIX_ADDR_MAX);
		memcpy(h->addr, addr->name->sun_path, h->addr_len);
	}
	fill_file(sk, h);
	/* a listener by its address: its embryos have it too (peer_key()) */
	ret = crfs_ck_object(ck, h->state == TCP_LISTEN && addr ? (void *)addr : sk,
			     &h->sock_objref);
	h->sock_objref = abs(h->sock_objref);
	if (!ret && peer && !sock_flag(peer, SOCK_DEAD)) {
		ret = peer_key(peer, h, &key);
		if (!ret)
			ret = crfs_ck_object(ck, key, &h->peer_objref);
		h->peer_objref = abs(h->peer_objref);
	}
	if (peer)
		sock_put(peer);
	return ret;
}

static int write_unix(struct crfs_ckpt *ck, struct crfs_hdr_file_unix *h,
		      const struct unix_ck *q)
{
	int ret = crfs_ck_record(ck, CKPT_HDR_FILE, h, sizeof(*h));

	if (ret || !h->nr_msgs)
		return ret;
	ret = crfs_ck_frame(ck, CKPT_HDR_BUFFER, 4 * h->nr_msgs + h->data_len);
	if (!ret)
		ret = crfs_ck_write(ck, q->lens, 4 * h->nr_msgs);
	if (!ret && h->data_len)
		ret = crfs_ck_write(ck, q->data, h->data_len);
	return ret;
}

/*
 * The FILE record of the socket @file at @fd, its common fields in @common: 1 when it is
 * no UNIX socket (the caller writes it opaque), else 0 or an error.
 */
int crfs_ckpt_unix(struct crfs_ckpt *ck, const struct ckpt_hdr_file *common,
		   struct file *file, int fd)
{
	struct socket *sock = sock_from_file(file);
	struct crfs_hdr_file_unix *h;
	struct unix_ck q = { };
	int ret;

	if (!sock || !sock->sk || sock->sk->sk_family != AF_UNIX)
		return 1;
	h = kzalloc(sizeof(*h), GFP_KERNEL);
	q.lens = kvcalloc(CRFS_UNIX_MAX_MSGS, sizeof(u32), GFP_KERNEL);
	q.data = kvmalloc(CRFS_UNIX_MAX_DATA, GFP_KERNEL);
	ret = h && q.lens && q.data ? 0 : -ENOMEM;
	if (!ret) {
		h->common = *common;
		ret = fill_unix(ck, sock->sk, h);
	}
	if (!ret && h->state != TCP_LISTEN)
		ret = copy_queue(sock->sk, h, &q);
	if (ret == -EBADF)
		ret = crfs_ck_fail(ck, -EOPNOTSUPP, "fd %d: a UNIX socket with fds queued", fd);
	else if (ret == -EAGAIN)
		ret = crfs_ck_fail(ck, -EOPNOTSUPP,
				   "fd %d: bytes sent into a UNIX connection not accepted yet", fd);
	else if (ret == -E2BIG)
		ret = crfs_ck_fail(ck, -EOPNOTSUPP,
				   "fd %d: a UNIX socket with more than %u messages or %u bytes queued",
				   fd, CRFS_UNIX_MAX_MSGS, CRFS_UNIX_MAX_DATA);
	if (!ret)
		ret = write_unix(ck, h, &q);
	kvfree(q.data);
	kvfree(q.lens);
	kfree(h);
	return ret;
}
