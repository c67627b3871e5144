// SPDX-License-Identifier: GPL-2.0
/*
 * Reading a checkpoint image from a file descriptor.
 *
 * The file is read with kernel_read() at explicit offsets; every read is bounded by the
 * size the file had when it was opened, and a file that shrinks meanwhile gives -EIO.
 * Records are framed by struct ckpt_hdr: a frame is accepted only when its length covers
 * its header, stays inside the file and matches the size its type requires.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/sched/signal.h>
#include <linux/string.h>
#include <linux/uio.h>

#include "crfs.h"

/* Fixed-size records must be exactly this long; FILE and LSM_INFO at least this long. */
struct crfs_rec_size {
	u32 type;
	u32 size;
	bool at_least;
	const char *name;
};

#define EXACT(t, s)	{ t, sizeof(struct s), false, #t }
#define AT_LEAST(t, s)	{ t, sizeof(struct s), true, #t }
#define ANY(t)		{ t, sizeof(struct ckpt_hdr), true, #t }

static const struct crfs_rec_size crfs_rec_sizes[] = {
	EXACT(CKPT_HDR_HEADER, ckpt_hdr_header),
	EXACT(CKPT_HDR_HEADER_ARCH, ckpt_hdr_header_arch),
	EXACT(CKPT_HDR_CONTAINER, ckpt_hdr_container),
	ANY(CKPT_HDR_BUFFER),
	ANY(CKPT_HDR_STRING),
	EXACT(CKPT_HDR_OBJREF, ckpt_hdr_objref),
	AT_LEAST(CKPT_HDR_LSM_INFO, ckpt_hdr_lsm),
	ANY(CKPT_HDR_SECURITY),
	EXACT(CKPT_HDR_TREE, ckpt_hdr_tree),
	EXACT(CKPT_HDR_TASK, ckpt_hdr_task),
	ANY(CKPT_HDR_TASK_NS),
	EXACT(CKPT_HDR_TASK_OBJS, ckpt_hdr_task_objs),
	ANY(CKPT_HDR_RESTART_BLOCK),
	EXACT(CKPT_HDR_THREAD, ckpt_hdr_thread),
	EXACT(CKPT_HDR_CPU, ckpt_hdr_cpu),
	EXACT(CKPT_HDR_CRED, ckpt_hdr_cred),
	AT_LEAST(CKPT_HDR_GROUPINFO, ckpt_hdr_groupinfo),
	EXACT(CKPT_HDR_TASK_CREDS, ckpt_hdr_task_creds),
	ANY(CKPT_HDR_CPU_FPU),
	ANY(CKPT_HDR_MM_CONTEXT_LDT),
	EXACT(CKPT_HDR_FILE_TABLE, ckpt_hdr_file_table),
	EXACT(CKPT_HDR_FILE_DESC, ckpt_hdr_file_desc),
	ANY(CKPT_HDR_FILE_NAME),
	AT_LEAST(CKPT_HDR_FILE, ckpt_hdr_file),
	ANY(CKPT_HDR_PIPE_BUF),
	EXACT(CKPT_HDR_MM, ckpt_hdr_mm),
	EXACT(CKPT_HDR_VMA, ckpt_hdr_vma),
	EXACT(CKPT_HDR_PGARR, ckpt_hdr_pgarr),
	EXACT(CKPT_HDR_MM_CONTEXT, ckpt_hdr_mm_context),
	EXACT(CKPT_HDR_FS, ckpt_hdr_fs),
	EXACT(CRFS_HDR_FS_EXT, crfs_hdr_fs_ext),
	EXACT(CKPT_HDR_SIGHAND, ckpt_hdr_sighand),
	EXACT(CKPT_HDR_SIGNAL, ckpt_hdr_signal),
	AT_LEAST(CKPT_HDR_SIGPENDING, ckpt_hdr_sigpending),
	EXACT(CKPT_HDR_SIGNAL_TASK, ckpt_hdr_signal_task),
	EXACT(CRFS_HDR_SIGALTSTACK, crfs_hdr_sigaltstack),
	EXACT(CRFS_HDR_FILE_ID, crfs_hdr_file_id),
	EXACT(CRFS_HDR_OOM_SCORE_ADJ, crfs_hdr_oom_score_adj),
	EXACT(CRFS_HDR_RSEQ, crfs_hdr_rseq),
	EXACT(CRFS_HDR_TASK_MISC, crfs_hdr_task_misc),
	EXACT(CRFS_HDR_SECCOMP, crfs_hdr_seccomp),
	EXACT(CRFS_HDR_POSIX_TIMER, crfs_hdr_posix_timer),
	AT_LEAST(CRFS_HDR_SIGINFO_RAW, crfs_hdr_siginfo_raw),
	EXACT(CRFS_HDR_DELETED_STAT, crfs_hdr_deleted_stat),
	EXACT(CRFS_HDR_FILE_OWNER, crfs_hdr_file_owner),
	EXACT(CKPT_HDR_TAIL, ckpt_hdr_tail),
	EXACT(CKPT_HDR_ERROR, ckpt_hdr),
};

static const struct crfs_rec_size *crfs_rec_size(u32 type)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(crfs_rec_sizes); i++)
		if (crfs_rec_sizes[i].type == type)
			return &crfs_rec_sizes[i];
	return NULL;
}

bool crfs_rec_known(u32 type)
{
	return crfs_rec_size(type);
}

const char *crfs_rec_name(u32 type)
{
	const struct crfs_rec_size *rs = crfs_rec_size(type);

	return rs ? rs->name : "unknown record";
}

int crfs_image_open(struct crfs_image *img, int fd)
{
	struct file *file;

	memset(img, 0, sizeof(*img));
	img->err_offset = -1;
	file = fget(fd);
	if (!file)
		return -EBADF;
	if (!(file->f_mode & FMODE_READ)) {
		fput(file);
		return -EBADF;
	}
	img->file = file;
	if (!S_ISREG(file_inode(file)->i_mode)) {
		strscpy(img->err_msg, "not a regular file", sizeof(img->err_msg));
		return -EINVAL;
	}
	img->size = i_size_read(file_inode(file));
	if (img->size > CRFS_MAX_IMAGE_SIZE) {
		scnprintf(img->err_msg, sizeof(img->err_msg),
			  "image of %lld bytes, more than %llu", img->size,
			  CRFS_MAX_IMAGE_SIZE);
		return -EFBIG;
	}
	return 0;
}

void crfs_image_close(struct crfs_image *img)
{
	if (img->file)
		fput(img->file);
	img->file = NULL;
}

/* Read exactly @len bytes at @pos, which must lie inside the image. */
int crfs_image_read(struct crfs_image *img, loff_t pos, void *buf, size_t len)
{
	char *p = buf;

	if (pos < 0 || pos > img->size || len > img->size - pos)
		return -EINVAL;
	while (len) {
		loff_t at = pos;
		ssize_t n;

		if (fatal_signal_pending(current))
			return -EINTR;
		n = kernel_read(img->file, p, len, &at);
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;	/* the file shrank under us */
		p += n;
		pos += n;
		len -= n;
	}
	return 0;
}

/*
 * Read exactly @len bytes at @pos straight into the current task's memory at @ubuf,
 * faulting its pages in as the copy goes: one copy, no kernel buffer.  -EFAULT when
 * part of the range cannot be written, -EIO when the file shrank under us.
 */
int crfs_image_read_user(struct crfs_image *img, loff_t pos, void __user *ubuf,
			 size_t len)
{
	struct iov_iter iter;

	if (pos < 0 || pos > img->size || len > img->size - pos)
		return -EINVAL;
	while (len) {
		loff_t at = pos;
		ssize_t n;

		if (fatal_signal_pending(current))
			return -EINTR;
		iov_iter_ubuf(&iter, READ, ubuf, len);
		n = vfs_iter_read(img->file, &iter, &at, 0);
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;	/* the file shrank under us */
		ubuf += n;
		pos += n;
		len -= n;
	}
	return 0;
}

int crfs_image_fail(struct crfs_image *img, const struct crfs_rec *rec,
		    const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(img->err_msg, sizeof(img->err_msg), fmt, args);
	va_end(args);
	if (rec) {
		img->err_offset = rec->pos;
		img->err_type = rec->type;
	}
	return -EINVAL;
}

/*
 * An optional record: if the next one is of @type, it is read into @buf (@size bytes
 * exactly) and 1 returned; else nothing is consumed and 0 returned, at the image's end
 * too (a missing TAIL is the caller's to report). @rec: its frame, for error messages.
 */
int crfs_image_optional(struct crfs_image *img, u32 type, struct crfs_rec *rec,
			void *buf, size_t size)
{
	int ret;

	if (img->pos == img->size)
		return 0;
	ret = crfs_image_peek(img, rec);
	if (ret || rec->type != type)
		return ret;
	ret = crfs_image_next(img, rec);
	if (!ret)
		ret = crfs_image_body(img, rec, buf, size);
	return ret ? ret : 1;
}

/* The frame of the record at img->pos, checked; img->pos is left alone. */
int crfs_image_peek(struct crfs_image *img, struct crfs_rec *rec)
{
	const struct crfs_rec_size *rs;
	struct ckpt_hdr h;
	int ret;

	rec->pos = img->pos;
	rec->type = 0;
	rec->len = 0;
	if (img->size - img->pos < (loff_t)sizeof(h))
		return crfs_image_fail(img, rec, img->pos == img->size ?
				       "unexpected end of the file" :
				       "truncated record header");
	ret = crfs_image_read(img, img->pos, &h, sizeof(h));
	if (ret)
		return ret;
	rec->type = h.type;
	rec->len = h.len;
	if (h.len < sizeof(h))
		return crfs_image_fail(img, rec, "len %u is shorter than its header",
				       h.len);
	if (h.len > img->size - img->pos)
		return crfs_image_fail(img, rec,
				       "len %u runs past the end of the file", h.len);
	rs = crfs_rec_size(h.type);
	if (rs && !rs->at_least && h.len != rs->size)
		return crfs_image_fail(img, rec, "len %u, expected %u", h.len,
				       rs->size);
	if (rs && rs->at_least && h.len < rs->size)
		return crfs_image_fail(img, rec, "len %u, expected at least %u",
				       h.len, rs->size);
	return 0;
}

/* The next record's frame, checked; img->pos moves past the record. */
int crfs_image_next(struct crfs_image *img, struct crfs_rec *rec)
{
	int ret = crfs_image_peek(img, rec);

	if (!ret)
		img->pos = rec->pos + rec->len;
	return ret;
}

/* The first @size bytes of a record (header included): its fixed-layout struct. */
int crfs_image_body(struct crfs_image *img, const struct crfs_rec *rec,
		    void *buf, size_t size)
{
	if (rec->len < size)
		return crfs_image_fail(img, rec, "len %u, expected at least %zu",
				       rec->len, size);
	return crfs_image_read(img, rec->pos, buf, size);
}
