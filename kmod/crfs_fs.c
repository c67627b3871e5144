// SPDX-License-Identifier: GPL-2.0
/*
 * The fs_struct of a restored process: cwd, root and umask.
 *
 * copy-in: an FS object is FS FILE_NAME{pwd} FILE_NAME{root} [CRFS_HDR_FS_EXT{umask}];
 *   each name absolute, NUL-terminated, at most PATH_MAX bytes; the umask within 0777.
 * prepare: both looked up from the caller's root with the credentials the task will
 *   have (the lookup follows symlinks, as chdir(2) does); each must be a directory the
 *   task may search; a root other than the caller's only with CAP_SYS_CHROOT (as
 *   chroot(2)). A cwd deleted at the checkpoint ("/dir (deleted)", as d_path() says) is
 *   made again and removed at once (crfs_deleted_dir()), as CRIU does.
 * act: installed in current->fs as set_fs_pwd()/set_fs_root() do (those are not
 *   exported): under fs->lock and its seqcount, the old paths put after.
 */
#include <linux/capability.h>
#include <linux/fs_struct.h>
#include <linux/namei.h>
#include <linux/path.h>
#include <linux/slab.h>
#include <linux/stat.h>
#include <linux/string.h>

#include "crfs.h"

/* ---------------------------------------------------------------- copy-in */

static int load_name(struct crfs_image *img, char **out)
{
	struct crfs_rec rec;
	u32 len;
	char *name;
	int ret;

	ret = crfs_image_next(img, &rec);
	if (ret)
		return ret;
	if (rec.type != CKPT_HDR_FILE_NAME)
		return crfs_image_fail(img, &rec, "FS: expected CKPT_HDR_FILE_NAME");
	len = rec.len - sizeof(struct ckpt_hdr);
	if (len < 2 || len > PATH_MAX)
		return crfs_image_fail(img, &rec, "FS: path of %u bytes", len);
	name = kmalloc(len, GFP_KERNEL_ACCOUNT);
	if (!name)
		return -ENOMEM;
	*out = name;
	ret = crfs_image_read(img, rec.pos + sizeof(struct ckpt_hdr), name, len);
	if (ret)
		return ret;
	if (name[0] != '/' || strnlen(name, len) != len - 1)
		return crfs_image_fail(img, &rec,
				       "FS: path not absolute or not one NUL-terminated string");
	return 0;
}

/* After the FS record: the two names, then the umask if the image has one. */
int crfs_fs_load(struct crfs_image *img, struct crfs_object *obj)
{
	struct crfs_hdr_fs_ext ext;
	struct crfs_rec rec;
	struct crfs_fs *fs;
	int ret;

	fs = kzalloc(sizeof(*fs), GFP_KERNEL_ACCOUNT);
	if (!fs)
		return -ENOMEM;
	obj->fs = fs;
	ret = load_name(img, &fs->pwd);
	if (!ret)
		ret = load_name(img, &fs->root);
	if (!ret)
		ret = crfs_image_optional(img, CRFS_HDR_FS_EXT, &rec, &ext, sizeof(ext));
	if (ret <= 0)
		return ret;
	if (ext.umask & ~0777)
		return crfs_image_fail(img, &rec, "FS_EXT: umask %#o", ext.umask);
	fs->umask = ext.umask;
	fs->has_umask = true;
	return 0;
}

/* ---------------------------------------------------------------- prepare */

/* @name, a directory the task may search (MAY_EXEC | MAY_CHDIR, as chdir(2)). */
static int lookup_dir(struct crfs_sig_restore *sr, const char *what,
		      const char *name, struct path *path)
{
	int ret;

	ret = kern_path(name, LOOKUP_FOLLOW | LOOKUP_DIRECTORY, path);
	if (ret == -ENOENT && !strcmp(what, "cwd")) {
		ret = crfs_deleted_dir(name, path);	/* "/dir (deleted)" */
		if (ret && ret != -ENOENT)
			return crfs_sig_refuse(sr, ret,
					       "cwd %s cannot be made again (errno %d)",
					       name, -ret);
	}
	if (ret == -ENOTDIR)
		return crfs_sig_refuse(sr, ret, "%s %s is not a directory", what, name);
	if (ret)
		return crfs_sig_refuse(sr, ret, "%s %s cannot be looked up (errno %d)", what,
				       name, -ret);
	ret = inode_permission(mnt_user_ns(path->mnt), d_inode(path->dentry),
			       MAY_EXEC | MAY_CHDIR);
	if (ret) {
		path_put(path);
		path->mnt = NULL;
		return crfs_sig_refuse(sr, ret, "%s %s may not be searched by the task", what,
				       name);
	}
	return 0;
}

int crfs_fs_prepare(struct crfs_sig_restore *sr, const struct crfs_fs *fs)
{
	struct path mine;
	bool same;
	int ret;

	ret = lookup_dir(sr, "root", fs->root, &sr->root);
	if (ret)
		return ret;
	get_fs_root(current->fs, &mine);
	same = path_equal(&mine, &sr->root);
	path_put(&mine);
	if (same) {
		path_put(&sr->root);	/* nothing to change */
		sr->root.mnt = NULL;
	} else if (!ns_capable(current_user_ns(), CAP_SYS_CHROOT)) {
		return crfs_sig_refuse(sr, -EPERM,
				       "root %s is not the caller's root, and the caller lacks CAP_SYS_CHROOT",
				       fs->root);
	}
	return lookup_dir(sr, "cwd", fs->pwd, &sr->pwd);
}

/* ---------------------------------------------------------------- act */

/* Takes over the references of sr->pwd and sr->root. */
void crfs_fs_act(struct crfs_sig_restore *sr, const struct crfs_fs *fs)
{
	struct fs_struct *cur = current->fs;
	struct path old_pwd = {}, old_root = {};

	spin_lock(&cur->lock);
	write_seqcount_begin(&cur->seq);
	if (sr->root.mnt) {
		old_root = cur->root;
		cur->root = sr->root;
	}
	if (sr->pwd.mnt) {
		old_pwd = cur->pwd;
		cur->pwd = sr->pwd;
	}
	write_seqcount_end(&cur->seq);
	spin_unlock(&cur->lock);
	sr->root.mnt = NULL;
	sr->pwd.mnt = NULL;
	if (old_root.dentry)
		path_put(&old_root);
	if (old_pwd.dentry)
		path_put(&old_pwd);
	if (fs->has_umask)
		WRITE_ONCE(cur->umask, fs->umask);
}
