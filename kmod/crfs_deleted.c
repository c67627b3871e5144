// SPDX-License-Identifier: GPL-2.0
/*
 * Files deleted while open (crfs extension CRFS_FILE_DELETED): checkpoint and restore.
 *
 *   FILE{size, st_mode} STRING{its /proc link} BUFFER{size bytes}
 *   [CRFS_HDR_DELETED_STAT{uid, gid, atime, mtime}] [CRFS_HDR_FILE_ID{dev, ino, ...}]
 *
 * The FILE_ID (regular files; dev and inode as stat(2) gives them) says which files are
 * one inode: two open file descriptions of one memfd (a process opened another's
 * /proc/PID/fd/N) are restored as two files of one new inode, the content written once
 * from the first file's record, each with its own flags and position.
 *
 * The BUFFER is a regular file's content, or a symlink's target (an O_PATH fd on a
 * symlink unlinked since). The link is "/dir/name (deleted)", or "/memfd:name (deleted)"
 * for a memfd.
 *
 * Restore, with the credentials the task will have (crfs_files_prepare()):
 *   a memfd: a new shmem file named "memfd:name" (what memfd_create() makes);
 *   a regular file or a symlink: created at a random name in its original directory,
 *     opened, and unlinked again before the directory is unlocked (kern_path_create()
 *     holds it): the name is never seen by readdir, nothing is left behind on failure,
 *     and it works on every filesystem (overlayfs has no O_TMPFILE in 6.1) and for
 *     symlinks, which O_TMPFILE cannot make. The task must be allowed to create and
 *     delete there (may_create/may_delete as it); a directory that is gone refuses the
 *     restart.
 * Then the content is written, the owner (chown: CAP_CHOWN unless it is the task's), the
 * mode and the times set through notify_change() as the task, and the file reopened with
 * the image's flags. The caller sets the position.
 */
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mount.h>
#include <linux/mutex.h>
#include <linux/namei.h>
#include <linux/overflow.h>
#include <linux/path.h>
#include <linux/random.h>
#include <linux/shmem_fs.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uidgid.h>

#include "crfs.h"

#define DELETED_SUFFIX	" (deleted)"
#define MEMFD_PREFIX	"/memfd:"
#define COPY_CHUNK	SZ_1M
#define MAX_INO_CHAIN	16	/* deleted files of one ino on as many devices */
/* the image's f_flags a restored deleted file keeps */
#define DEL_FLAGS	(O_ACCMODE | O_APPEND | O_NONBLOCK | O_NOATIME | O_SYNC | \
			 O_DSYNC | O_LARGEFILE | O_PATH)

struct crfs_deleted {
	char *link;		/* the STRING, NUL-terminated */
	loff_t pos;		/* the BUFFER's bytes in the image */
	u64 size;
	umode_t mode;
	bool has_stat;		/* CRFS_HDR_DELETED_STAT: owner and times */
	kuid_t uid;
	kgid_t gid;
	struct timespec64 atime;
	struct timespec64 mtime;
};

/* ---------------------------------------------------------------- copy-in */

static int load_link(struct crfs_ctx *ctx, struct crfs_deleted *del)
{
	struct crfs_rec rec;
	u32 len;
	int ret;

	ret = crfs_expect(ctx, &rec, CKPT_HDR_STRING);
	if (ret)
		return ret;
	len = rec.len - sizeof(struct ckpt_hdr);
	if (len < 2 || len > CRFS_MAX_STRING)
		return crfs_image_fail(ctx->img, &rec, "deleted file: link of %u bytes",
				       len);
	del->link = kmalloc(len, GFP_KERNEL_ACCOUNT);
	if (!del->link)
		return -ENOMEM;
	ret = crfs_image_read(ctx->img, rec.pos + sizeof(struct ckpt_hdr),
			      del->link, len);
	if (ret)
		return ret;
	if (del->link[0] != '/' || strnlen(del->link, len) != len - 1)
		return crfs_image_fail(ctx->img, &rec,
				       "deleted file: link not absolute or not one NUL-terminated string");
	return 0;
}

/* [CRFS_HDR_DELETED_STAT] after the BUFFER: ids in the caller's user namespace, times. */
static int load_owner(struct crfs_ctx *ctx, struct crfs_deleted *del)
{
	struct crfs_hdr_deleted_stat h;
	struct crfs_image *img = ctx->img;
	struct crfs_rec rec;
	int ret;

	ret = crfs_image_optional(img, CRFS_HDR_DELETED_STAT, &rec, &h, sizeof(h));
	if (ret <= 0)
		return ret;
	del->uid = make_kuid(current_user_ns(), h.uid);
	del->gid = make_kgid(current_user_ns(), h.gid);
	if (!uid_valid(del->uid) || !gid_valid(del->gid))
		return crfs_image_fail(img, &rec, "deleted file: owner %u:%u unmapped",
				       h.uid, h.gid);
	del->atime = ns_to_timespec64(h.atime_ns);
	del->mtime = ns_to_timespec64(h.mtime_ns);
	del->has_stat = true;
	return 0;
}

static int check_header(struct crfs_ctx *ctx, const struct crfs_rec *rec,
			const struct crfs_hdr_file_deleted *h)
{
	umode_t type = h->st_mode & S_IFMT;

	if (h->st_mode & ~(S_IFMT | S_IALLUGO) ||
	    (type && type != S_IFREG && type != S_IFLNK && type != S_IFDIR))
		return crfs_image_fail(ctx->img, rec,
				       "deleted file: st_mode %#o is not a file, directory or symlink",
				       h->st_mode);
	if (type == S_IFDIR && h->size)
		return crfs_image_fail(ctx->img, rec,
				       "deleted directory with %llu bytes", h->size);
	if (h->size > CRFS_MAX_DELETED)
		return crfs_image_fail(ctx->img, rec,
				       "deleted file of %llu bytes, at most %u",
				       h->size, CRFS_MAX_DELETED);
	if (type == S_IFLNK && (!h->size || h->size >= PATH_MAX))
		return crfs_image_fail(ctx->img, rec,
				       "deleted symlink: target of %llu bytes", h->size);
	return 0;
}

/* The owner of @file's inode met before on the same device, or NULL; -errno. */
static int find_inode(struct crfs_ctx *ctx, const struct crfs_file *file,
		      const struct crfs_rec *rec, struct crfs_file **out)
{
	struct crfs_file *f = xa_load(&ctx->plan->inodes, file->id.ino);
	u32 hops = 0;

	for (; f && f->id.dev != file->id.dev; f = f->inode_next)
		if (++hops >= MAX_INO_CHAIN)
			return crfs_image_fail(ctx->img, rec,
					       "deleted files of inode %llu on %u devices",
					       file->id.ino, hops);
	if (f && (f->deleted->mode != file->deleted->mode ||
		  f->deleted->size != file->deleted->size))
		return crfs_image_fail(ctx->img, rec,
				       "deleted files of inode %llu differ in mode or size",
				       file->id.ino);
	*out = f;
	return 0;
}

/* A deleted regular file with its identity joins the files of its inode, or starts them. */
static int join_inode(struct crfs_ctx *ctx, struct crfs_file *file,
		      const struct crfs_rec *rec)
{
	struct crfs_file *owner = NULL;
	void *old;
	int ret;

	if (!file->has_id || !S_ISREG(file->deleted->mode))
		return 0;
	ret = find_inode(ctx, file, rec, &owner);
	if (ret)
		return ret;
	if (owner) {
		file->inode_owner = owner;
		owner->inode_members++;
		return 0;
	}
	file->inode_owner = file;
	file->inode_members = 1;
	file->inode_id = ++ctx->plan->nr_inodes;
	old = xa_store(&ctx->plan->inodes, file->id.ino, file, GFP_KERNEL_ACCOUNT);
	if (xa_is_err(old))
		return xa_err(old);
	file->inode_next = old;
	return 0;
}

/* CRFS_FILE_DELETED FILE, then STRING, BUFFER and maybe the owner and identity. */
int crfs_deleted_load(struct crfs_ctx *ctx, struct crfs_file *file,
		      const struct crfs_rec *rec)
{
	struct crfs_hdr_file_deleted h;
	struct crfs_deleted *del;
	struct crfs_rec buf;
	int ret;

	if (rec->len != sizeof(h))
		return crfs_image_fail(ctx->img, rec,
				       "deleted FILE of %u bytes, expected %zu",
				       rec->len, sizeof(h));
	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (!ret)
		ret = check_header(ctx, rec, &h);
	if (ret)
		return ret;
	del = kzalloc(sizeof(*del), GFP_KERNEL_ACCOUNT);
	if (!del)
		return -ENOMEM;
	file->deleted = del;
	del->size = h.size;
	del->mode = h.st_mode;
	if (!(del->mode & S_IFMT))	/* not recorded (a converted image): 0600 */
		del->mode = S_IFREG | (h.st_mode ? h.st_mode : 0600);
	ret = load_link(ctx, del);
	if (!ret)
		ret = crfs_expect(ctx, &buf, CKPT_HDR_BUFFER);
	if (ret)
		return ret;
	if (buf.len - sizeof(struct ckpt_hdr) != h.size)
		return crfs_image_fail(ctx->img, &buf,
				       "deleted file: BUFFER of %zu bytes, size %llu",
				       buf.len - sizeof(struct ckpt_hdr), h.size);
	del->pos = buf.pos + sizeof(struct ckpt_hdr);
	ret = load_owner(ctx, del);
	if (!ret)
		ret = crfs_file_id_load(ctx->img, file);
	return ret ?: join_inode(ctx, file, rec);
}

void crfs_deleted_free(struct crfs_file *file)
{
	if (!file->deleted)
		return;
	kfree(file->deleted->link);
	kfree(file->deleted);
	file->deleted = NULL;
}

/* ---------------------------------------------------------------- restore */

__printf(2, 3)
static void refuse(struct crfs_image *img, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(img->err_msg, sizeof(img->err_msg), fmt, args);
	va_end(args);
}

/* The image's bytes into @file from offset 0, @size of them. */
static int fill(struct crfs_image *img, const struct crfs_deleted *del,
		struct file *file)
{
	u64 done = 0;
	loff_t pos = 0;
	ssize_t n;
	void *buf;
	int ret = 0;

	if (!del->size)
		return 0;
	buf = kvmalloc(min_t(u64, del->size, COPY_CHUNK), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	while (!ret && done < del->size) {
		size_t len = min_t(u64, del->size - done, COPY_CHUNK);

		ret = crfs_image_read(img, del->pos + done, buf, len);
		if (ret)
			break;
		n = kernel_write(file, buf, len, &pos);
		if (n != len)
			ret = n < 0 ? n : -ENOSPC;
		done += len;
		if (fatal_signal_pending(current))
			ret = -EINTR;
		cond_resched();
	}
	kvfree(buf);
	return ret;
}

/*
 * The owner, the mode (after chown, which clears set-id bits), then the times (after the
 * content was written), as the task may set them: notify_change() checks it.
 */
static int set_attrs(const struct crfs_deleted *del, struct file *file)
{
	struct user_namespace *mnt_userns = mnt_user_ns(file->f_path.mnt);
	struct dentry *dentry = file->f_path.dentry;
	struct inode *inode = d_inode(dentry);
	struct iattr attr = { 0 };
	int ret = 0;

	inode_lock(inode);
	if (del->has_stat) {
		attr.ia_valid = ATTR_UID | ATTR_GID;
		attr.ia_vfsuid = VFSUIDT_INIT(del->uid);
		attr.ia_vfsgid = VFSGIDT_INIT(del->gid);
		ret = notify_change(mnt_userns, dentry, &attr, NULL);
	}
	if (!ret && !S_ISLNK(del->mode)) {
		attr.ia_valid = ATTR_MODE;
		attr.ia_mode = del->mode;
		ret = notify_change(mnt_userns, dentry, &attr, NULL);
	}
	if (!ret && del->has_stat) {
		attr.ia_valid = ATTR_ATIME | ATTR_MTIME | ATTR_ATIME_SET | ATTR_MTIME_SET;
		attr.ia_atime = del->atime;
		attr.ia_mtime = del->mtime;
		ret = notify_change(mnt_userns, dentry, &attr, NULL);
	}
	inode_unlock(inode);
	return ret;
}

/* "memfd:name" of "/memfd:name (deleted)", in @out (NAME_MAX + 1 bytes). */
static bool memfd_name(const char *link, char *out)
{
	size_t len = strlen(link), pre = strlen(MEMFD_PREFIX) - 1;
	size_t suf = strlen(DELETED_SUFFIX);

	if (strncmp(link, MEMFD_PREFIX, pre + 1) || len < pre + 1 + suf ||
	    strcmp(link + len - suf, DELETED_SUFFIX))
		return false;
	len -= suf + 1;		/* without '/' and the suffix */
	if (len > NAME_MAX)
		return false;
	memcpy(out, link + 1, len);
	out[len] = '\0';
	return true;
}

static struct file *new_memfd(const char *name)
{
	struct file *file = shmem_file_setup(name, 0, VM_NORESERVE);

	if (!IS_ERR(file)) {
		file->f_mode |= FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE;
		file->f_flags |= O_LARGEFILE;
	}
	return file;
}

/* The directory of "/dir/name (deleted)" plus a random name in it, in @out. */
static int temp_name(const char *link, char *out)
{
	size_t len = strlen(link), suf = strlen(DELETED_SUFFIX);
	const char *slash;

	if (len > suf && !strcmp(link + len - suf, DELETED_SUFFIX))
		len -= suf;
	slash = strnchr(link, len, '/');
	while (slash && strnchr(slash + 1, link + len - slash - 1, '/'))
		slash = strnchr(slash + 1, link + len - slash - 1, '/');
	if (!slash || slash - link + 32 > PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(out, link, slash - link + 1);
	snprintf(out + (slash - link + 1), 32, ".crfs-deleted-%08x%08x",
		 get_random_u32(), get_random_u32());
	return 0;
}

/* Creates @name (a file, or a symlink to @target), opens it as @flags, unlinks it. */
static struct file *create_unlinked(const char *name, umode_t mode,
				    const char *target)
{
	struct user_namespace *mnt_userns;
	struct dentry *dentry;
	struct inode *dir;
	struct path parent, new;
	struct file *file;
	int ret;

	dentry = kern_path_create(AT_FDCWD, name, &parent, 0);
	if (IS_ERR(dentry))
		return ERR_CAST(dentry);
	dir = d_inode(parent.dentry);
	mnt_userns = mnt_user_ns(parent.mnt);
	if (target)
		ret = vfs_symlink(mnt_userns, dir, dentry, target);
	else
		ret = vfs_create(mnt_userns, dir, dentry, mode & 0700, true);
	file = ERR_PTR(ret);
	if (!ret) {
		new.mnt = parent.mnt;
		new.dentry = dentry;
		file = dentry_open(&new, target ? O_PATH : O_RDWR | O_LARGEFILE,
				   current_cred());
		ret = vfs_unlink(mnt_userns, dir, dentry, NULL);
		if (ret && !IS_ERR(file)) {
			fput(file);
			file = ERR_PTR(ret);
		}
	}
	done_path_create(&parent, dentry);
	return file;
}

/* A deleted directory (shared with the cwd of the same name), open O_RDONLY. */
static struct file *deleted_dir_file(const char *link)
{
	struct path path;
	struct file *file;
	int ret;

	ret = crfs_deleted_dir(link, &path);
	if (ret)
		return ERR_PTR(ret);
	file = dentry_open(&path, O_RDONLY | O_DIRECTORY | O_LARGEFILE, current_cred());
	path_put(&path);
	return file;
}

/* The restored inode, open O_RDWR (a symlink: O_PATH), content written. */
static struct file *make_inode(struct crfs_image *img, const struct crfs_deleted *del,
			       char *name, char *target)
{
	struct file *file;
	int ret;

	if (S_ISDIR(del->mode))
		return deleted_dir_file(del->link);
	if (S_ISREG(del->mode) && memfd_name(del->link, name)) {
		file = new_memfd(name);
	} else {
		ret = temp_name(del->link, name);
		if (ret)
			return ERR_PTR(ret);
		if (S_ISLNK(del->mode)) {
			ret = crfs_image_read(img, del->pos, target, del->size);
			if (ret)
				return ERR_PTR(ret);
			target[del->size] = '\0';
			if (strlen(target) != del->size)
				return ERR_PTR(-EINVAL);
		}
		file = create_unlinked(name, del->mode, S_ISLNK(del->mode) ? target : NULL);
	}
	if (IS_ERR(file) || S_ISLNK(del->mode))
		return file;
	ret = fill(img, del, file);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

static const char *what_failed(int err)
{
	switch (err) {
	case -ENOENT:
		return "its directory is gone";
	case -EACCES:
	case -EPERM:
		return "the task may not make or chown it";
	case -EINVAL:
		return "a symlink target with a NUL";
	case -ENOSPC:
	case -EFBIG:
	case -EDQUOT:
		return "no room for its content";
	default:
		return "cannot be made again";
	}
}

/*
 * The inode of a CRFS_FILE_DELETED object, made again with its content, owner and times:
 * a file open O_RDWR (a symlink: O_PATH). Errors name the file of fd @fd.
 */
struct file *crfs_deleted_inode(struct crfs_image *img, const struct crfs_file *cf,
				int fd)
{
	const struct crfs_deleted *del = cf->deleted;
	struct file *inode_file;
	char *name;
	int ret;

	name = kmalloc(PATH_MAX * 2, GFP_KERNEL);
	if (!name)
		return ERR_PTR(-ENOMEM);
	inode_file = make_inode(img, del, name, name + PATH_MAX);
	kfree(name);
	ret = PTR_ERR_OR_ZERO(inode_file);
	if (!ret) {
		ret = set_attrs(del, inode_file);
		if (ret)
			fput(inode_file);
	}
	if (!ret)
		return inode_file;
	refuse(img, "fd %d: %.48s: %s", fd, del->link, what_failed(ret));
	return ERR_PTR(ret);
}

/* @cf's own open file of @inode_file (crfs_deleted_inode()), at position 0. */
struct file *crfs_deleted_reopen(const struct crfs_file *cf, struct file *inode_file)
{
	int flags = (cf->h.f_flags & DEL_FLAGS) | O_LARGEFILE;
	struct file *file;

	if (S_ISDIR(cf->deleted->mode))
		flags |= cf->h.f_flags & O_DIRECTORY;
	if (S_ISLNK(cf->deleted->mode))
		file = get_file(inode_file);
	else
		file = dentry_open(&inode_file->f_path, flags, current_cred());
	if (!IS_ERR(file) && (file->f_flags & O_PATH)) {
		spin_lock(&file->f_lock);	/* as open(2) keeps it */
		file->f_flags |= cf->h.f_flags & O_NOFOLLOW;
		spin_unlock(&file->f_lock);
	}
	return file;
}

/* The file of a CRFS_FILE_DELETED object on an inode of its own, at position 0. */
struct file *crfs_deleted_open(struct crfs_image *img, const struct crfs_file *cf,
			       int fd)
{
	struct file *inode_file, *file;

	inode_file = crfs_deleted_inode(img, cf, fd);
	if (IS_ERR(inode_file))
		return inode_file;
	file = crfs_deleted_reopen(cf, inode_file);
	fput(inode_file);
	return file;
}

/* ---------------------------------------------------------------- checkpoint */

/* A regular file, directory or symlink no name leads to any more (a memfd too). */
bool crfs_ckpt_is_deleted(struct file *file)
{
	umode_t mode = file_inode(file)->i_mode;

	return (S_ISREG(mode) || S_ISLNK(mode) || S_ISDIR(mode)) &&
	       (!file_inode(file)->i_nlink || d_unlinked(file->f_path.dentry));
}

/* A file to read @file's content through: itself if open for reading. */
static struct file *reader_of(struct crfs_ckpt *ck, struct file *file, int fd)
{
	struct inode *inode = file_inode(file);
	int ret;

	if ((file->f_mode & FMODE_READ) && (file->f_mode & FMODE_CAN_READ))
		return get_file(file);
	ret = inode_permission(file_mnt_user_ns(file), inode, MAY_READ);
	if (ret)
		return ERR_PTR(crfs_ck_fail(ck, ret,
					    "fd %d: a deleted file the caller may not read", fd));
	return dentry_open(&file->f_path, O_RDONLY | O_LARGEFILE, current_cred());
}

/* BUFFER{@size bytes of @file from offset 0}; the file must still hold them. */
static int write_content(struct crfs_ckpt *ck, struct file *file, int fd, u64 size)
{
	struct file *rd;
	loff_t pos = 0;
	void *buf;
	int ret;

	rd = reader_of(ck, file, fd);
	if (IS_ERR(rd))
		return PTR_ERR(rd);
	buf = kvmalloc(min_t(u64, max_t(u64, size, 1), COPY_CHUNK), GFP_KERNEL);
	ret = buf ? crfs_ck_frame(ck, CKPT_HDR_BUFFER, size) : -ENOMEM;
	while (!ret && pos < size) {
		size_t len = min_t(u64, size - pos, COPY_CHUNK);
		ssize_t n = kernel_read(rd, buf, len, &pos);

		if (n != len)
			ret = crfs_ck_fail(ck, n < 0 ? n : -EIO,
					   "fd %d: reading a deleted file", fd);
		else
			ret = crfs_ck_write(ck, buf, len);
		cond_resched();
	}
	kvfree(buf);
	fput(rd);
	return ret;
}

/* BUFFER{a symlink's target, without its NUL}. */
static int write_target(struct crfs_ckpt *ck, struct file *file, int fd, u64 *size)
{
	DEFINE_DELAYED_CALL(done);
	const char *target;
	int ret;

	target = vfs_get_link(file->f_path.dentry, &done);
	if (IS_ERR(target))
		return crfs_ck_fail(ck, PTR_ERR(target), "fd %d: a symlink's target", fd);
	*size = strlen(target);
	ret = crfs_ck_frame(ck, CKPT_HDR_BUFFER, *size);
	if (!ret)
		ret = crfs_ck_write(ck, target, *size);
	do_delayed_call(&done);
	return ret;
}

/* A regular file's CRFS_HDR_FILE_ID: which deleted files are one inode. */
static int write_inode_id(struct crfs_ckpt *ck, struct file *file, int fd)
{
	struct crfs_hdr_file_id id;
	int ret;

	if (!S_ISREG(file_inode(file)->i_mode))
		return 0;
	ret = crfs_file_stat_id(file, &id);
	if (ret)
		return crfs_ck_fail(ck, ret, "fd %d: stat of a deleted file", fd);
	return crfs_ck_record(ck, CRFS_HDR_FILE_ID, &id, sizeof(id));
}

/*
 * CRFS_FILE_DELETED FILE STRING{@link} BUFFER{content} CRFS_HDR_DELETED_STAT [FILE_ID]; the times
 * are taken after the content was read (reading it may set atime).
 */
int crfs_ckpt_deleted(struct crfs_ckpt *ck, struct ckpt_hdr_file *common,
		      struct file *file, int fd, const char *link)
{
	struct crfs_hdr_file_deleted h = { .common = *common };
	struct crfs_hdr_deleted_stat o = { 0 };
	struct inode *inode = file_inode(file);
	size_t len = strlen(link) + 1;
	int ret;

	h.common.f_type = CRFS_FILE_DELETED;
	h.st_mode = inode->i_mode;
	if (S_ISLNK(inode->i_mode)) {
		DEFINE_DELAYED_CALL(done);
		const char *target = vfs_get_link(file->f_path.dentry, &done);

		if (IS_ERR(target))
			return crfs_ck_fail(ck, PTR_ERR(target), "fd %d: a symlink's target",
					    fd);
		h.size = strlen(target);
		do_delayed_call(&done);
	} else if (S_ISREG(inode->i_mode)) {
		h.size = i_size_read(inode);
	}			/* a directory: its content is not kept */
	if (h.size > CRFS_MAX_DELETED || len > CRFS_MAX_STRING)
		return crfs_ck_fail(ck, -EFBIG, "fd %d: a deleted file of %llu bytes (at most %u)",
				    fd, h.size, CRFS_MAX_DELETED);
	ret = crfs_ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
	if (!ret)
		ret = crfs_ck_frame(ck, CKPT_HDR_STRING, len);
	if (!ret)
		ret = crfs_ck_write(ck, link, len);
	if (!ret && S_ISLNK(inode->i_mode))
		ret = write_target(ck, file, fd, &h.size);
	else if (!ret)
		ret = write_content(ck, file, fd, h.size);
	if (ret)
		return ret;
	o.uid = from_kuid_munged(current_user_ns(), inode->i_uid);
	o.gid = from_kgid_munged(current_user_ns(), inode->i_gid);
	o.atime_ns = timespec64_to_ns(&inode->i_atime);
	o.mtime_ns = timespec64_to_ns(&inode->i_mtime);
	ret = crfs_ck_record(ck, CRFS_HDR_DELETED_STAT, &o, sizeof(o));
	return ret ?: write_inode_id(ck, file, fd);
}

/* ---------------------------------------------------------------- a deleted cwd */

/* @name under the lock of its parent: created a directory, then removed again. */
static int mkdir_rmdir(const char *name, struct path *out)
{
	struct user_namespace *mnt_userns;
	struct dentry *dentry;
	struct path parent;
	struct inode *dir;
	int ret;

	dentry = kern_path_create(AT_FDCWD, name, &parent, LOOKUP_DIRECTORY);
	if (IS_ERR(dentry))
		return PTR_ERR(dentry);
	dir = d_inode(parent.dentry);
	mnt_userns = mnt_user_ns(parent.mnt);
	ret = vfs_mkdir(mnt_userns, dir, dentry, 0700);
	if (!ret && d_really_is_negative(dentry))
		ret = -ENOENT;	/* left unhashed by the filesystem */
	if (!ret) {
		out->mnt = mntget(parent.mnt);
		out->dentry = dget(dentry);
		ret = vfs_rmdir(mnt_userns, dir, dentry);
		if (ret) {
			path_put(out);
			out->mnt = NULL;
		}
	}
	done_path_create(&parent, dentry);
	return ret;
}

/*
 * A deleted directory recreated for a process, kept (a reference) until its files were
 * opened (at most DEAD_DIR_TTL) so that its cwd and its fds on the same name get the same
 * directory; keyed by the process restoring itself and the name.
 */
struct crfs_dead_dir {
	struct list_head node;
	pid_t tgid;
	unsigned long expires;
	struct path path;
	char name[];
};

#define DEAD_DIR_TTL	(120 * HZ)

static LIST_HEAD(crfs_dead_dirs);
static DEFINE_MUTEX(crfs_dead_dirs_lock);

static void drop_dead_dir(struct crfs_dead_dir *d)
{
	list_del(&d->node);
	path_put(&d->path);
	kfree(d);
}

/* Under the lock: the entry of @name for this process; expired ones go. */
static struct crfs_dead_dir *find_dead_dir(const char *name)
{
	struct crfs_dead_dir *d, *tmp, *found = NULL;

	list_for_each_entry_safe(d, tmp, &crfs_dead_dirs, node) {
		if (time_after(jiffies, d->expires))
			drop_dead_dir(d);
		else if (d->tgid == task_tgid_nr(current) && !strcmp(d->name, name))
			found = d;
	}
	return found;
}

static void keep_dead_dir(const char *name, const struct path *path)
{
	struct crfs_dead_dir *d;

	d = kmalloc(struct_size(d, name, strlen(name) + 1), GFP_KERNEL);
	if (!d)
		return;		/* not shared then: each gets its own */
	strcpy(d->name, name);
	d->tgid = task_tgid_nr(current);
	d->expires = jiffies + DEAD_DIR_TTL;
	d->path = *path;
	path_get(&d->path);
	list_add(&d->node, &crfs_dead_dirs);
}

/* "/dir/name (deleted)" made and removed again; a random name in /dir if it is taken. */
static int make_dead_dir(const char *name, struct path *out)
{
	size_t len = strlen(name), suf = strlen(DELETED_SUFFIX);
	char *buf;
	int ret;

	buf = kmalloc(PATH_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, name, len - suf);
	buf[len - suf] = '\0';
	ret = mkdir_rmdir(buf, out);
	if (ret == -EEXIST) {
		ret = temp_name(name, buf);
		if (!ret)
			ret = mkdir_rmdir(buf, out);
	}
	kfree(buf);
	return ret;
}

/*
 * A cwd or a directory fd the image names "/dir/name (deleted)": a directory made at its
 * name (at a random name in its parent when that is taken) and removed again, as the
 * task, so that it is a deleted directory again and /proc shows the same link; the cwd
 * and the fds of one process naming it get the same one. Returns -ENOENT for a name
 * without the suffix.
 */
int crfs_deleted_dir(const char *name, struct path *out)
{
	size_t len = strlen(name), suf = strlen(DELETED_SUFFIX);
	struct crfs_dead_dir *d;
	int ret = 0;

	if (len <= suf + 1 || len >= PATH_MAX || strcmp(name + len - suf, DELETED_SUFFIX))
		return -ENOENT;
	mutex_lock(&crfs_dead_dirs_lock);
	d = find_dead_dir(name);
	if (d) {
		*out = d->path;
		path_get(out);
	} else {
		ret = make_dead_dir(name, out);
		if (!ret)
			keep_dead_dir(name, out);
	}
	mutex_unlock(&crfs_dead_dirs_lock);
	return ret;
}

/* After the files of this process were opened (its cwd was before): its entries go. */
void crfs_deleted_forget(void)
{
	struct crfs_dead_dir *d, *tmp;

	mutex_lock(&crfs_dead_dirs_lock);
	list_for_each_entry_safe(d, tmp, &crfs_dead_dirs, node)
		if (d->tgid == task_tgid_nr(current))
			drop_dead_dir(d);
	mutex_unlock(&crfs_dead_dirs_lock);
}

void crfs_deleted_exit(void)
{
	struct crfs_dead_dir *d, *tmp;

	list_for_each_entry_safe(d, tmp, &crfs_dead_dirs, node)
		drop_dead_dir(d);
}
