// SPDX-License-Identifier: GPL-2.0
/*
 * CRFS_HDR_FILE_ID: is a mapped file still the one the process had mapped?
 *
 * A restart maps files again by name. CHECKPOINT records, after the FILE_NAME of each
 * generic FILE object, the identity of the file: dev and inode of the inode the VMA maps
 * (overlayfs hands mmap its real file, which is what /proc/<pid>/maps shows too), size
 * and mtime as stat(2) gives them. RESTART reopens the name, takes the same identity of
 * the file it got (the real inode behind an overlayfs file: d_real_inode) and refuses
 * the restart with ESTALE, naming the file, when any of the four differs. An image
 * without the record (another writer, an older crfs) is restarted as before.
 */
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/stat.h>
#include <linux/time64.h>

#include "crfs.h"

/* The identity of @file as crfs records it; an error from getattr. */
int crfs_file_id_of(struct file *file, struct crfs_hdr_file_id *id)
{
	struct inode *inode = d_real_inode(file->f_path.dentry);
	struct kstat st;
	int ret;

	ret = vfs_getattr(&file->f_path, &st, STATX_SIZE | STATX_MTIME,
			  AT_STATX_SYNC_AS_STAT);
	if (ret)
		return ret;
	memset(id, 0, sizeof(*id));
	id->dev = new_encode_dev(inode->i_sb->s_dev);
	id->ino = inode->i_ino;
	id->size = st.size;
	id->mtime_ns = timespec64_to_ns(&st.mtime);
	return 0;
}

/*
 * The identity of @file as stat(2) of it gives it (dev and inode of the file itself, not
 * of the real inode behind an overlayfs one): what the ptrace checkpointer reads for a
 * deleted file through /proc/PID/fd/N. It says which deleted files are one inode.
 */
int crfs_file_stat_id(struct file *file, struct crfs_hdr_file_id *id)
{
	struct kstat st;
	int ret;

	ret = vfs_getattr(&file->f_path, &st, STATX_INO | STATX_SIZE | STATX_MTIME,
			  AT_STATX_SYNC_AS_STAT);
	if (ret)
		return ret;
	memset(id, 0, sizeof(*id));
	id->dev = new_encode_dev(st.dev);
	id->ino = st.ino;
	id->size = st.size;
	id->mtime_ns = timespec64_to_ns(&st.mtime);
	return 0;
}

/* After a FILE's FILE_NAME: its CRFS_HDR_FILE_ID, if the image has one. */
int crfs_file_id_load(struct crfs_image *img, struct crfs_file *f)
{
	struct crfs_rec rec;
	int ret;

	ret = crfs_image_optional(img, CRFS_HDR_FILE_ID, &rec, &f->id, sizeof(f->id));
	if (ret <= 0)
		return ret;
	f->has_id = true;
	return 0;
}

/* 0 if @file, opened by @f's name, is the file the image recorded; else -ESTALE. */
int crfs_file_id_check(struct crfs_image *img, const struct crfs_file *f,
		       struct file *file)
{
	struct crfs_hdr_file_id now;
	const char *what = NULL;
	const char *name = f->name;
	size_t len = strlen(name);
	int ret;

	if (!f->has_id)
		return 0;
	ret = crfs_file_id_of(file, &now);
	if (ret)
		return ret;
	if (now.dev != f->id.dev || now.ino != f->id.ino)
		what = "inode";
	else if (now.size != f->id.size)
		what = "size";
	else if (now.mtime_ns != f->id.mtime_ns)
		what = "mtime";
	if (!what)
		return 0;
	/* the end of a long name: it says which file */
	scnprintf(img->err_msg, sizeof(img->err_msg),
		  "%s%s changed since the checkpoint (%s)", len > 56 ? "..." : "",
		  len > 56 ? name + len - 53 : name, what);
	return -ESTALE;
}
