// SPDX-License-Identifier: GPL-2.0
/*
 * UNIX sockets of a file table (CRFS_FILE_UNIX): socketpairs of the three types with the
 * messages queued in them, a socket whose peer was closed, an unconnected socket.
 *
 * As for the anon-inode files (crfs_anonfd.c), the restarter makes them in user space
 * (socketpair(2), its peer's queued messages sent back through the other end, shutdown(2))
 * and hands them in by objref; this file checks each is what its record says:
 *
 *   copy-in:	the record's length and fields, each bounded (CRFS_UNIX_MAX_MSGS messages,
 *		CRFS_UNIX_MAX_DATA bytes, CRFS_UNIX_ADDR_MAX), and its BUFFER of message
 *		lengths and bytes, whose lengths must add up
 *   validate:	the handed file is an AF_UNIX socket of the record's type, shutdown bits
 *		and queue (messages and bytes); when its peer's FILE is handed in too, the
 *		kernel's peer is that file's socket; a peer closed in the image is closed
 *   act:	crfs_files.c installs it like the anon files
 *
 * Not restored (refused): listening and bound sockets, a socket whose peer is a socket
 * outside the image (handed in by the caller, -i, as before), other families.
 *
 * CHECKPOINT writes the same record from the socket itself: its peer (unix_peer_get()),
 * address, shutdown bits, and the bytes of its receive queue copied under the queue's lock
 * (not consumed), refusing a queue that carries fds (SCM_RIGHTS).
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

/*
 * A socket of the image the restarter does not make, which the caller may hand in (-i):
 * listening or bound, or whose peer is outside the image.
 */
bool crfs_unix_outside(struct crfs_plan *plan, const struct crfs_file *file)
{
	const struct crfs_hdr_file_unix *h = file->unix_h;
	unsigned long objref;

	return h && (h->state == TCP_LISTEN || h->addr_len ||
		     (h->peer_objref && !file_of_sock(plan, h->peer_objref, &objref)));
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
	if (h->state == TCP_LISTEN || h->addr_len)
		return crfs_image_fail(img, NULL, "handed fd %d: a listening or bound socket",
				       fd);
	if ((READ_ONCE(sk->sk_shutdown) & SHUTDOWN_BITS) != h->shutdown)
		return crfs_image_fail(img, NULL, "handed fd %d: shutdown %#x, not %#x", fd,
				       READ_ONCE(sk->sk_shutdown), h->shutdown);
	queue_of(sk, &msgs, &bytes);
	if (bytes != h->data_len ||
	    (h->sock_type != SOCK_STREAM && msgs != h->nr_msgs))
		return crfs_image_fail(img, NULL,
				       "handed fd %d: %u messages of %llu bytes queued, not %u of %u",
				       fd, msgs, bytes, h->nr_msgs, h->data_len);
	return check_peer(plan, img, sk, h, fd);
}
