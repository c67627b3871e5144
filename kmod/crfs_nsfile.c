// SPDX-License-Identifier: GPL-2.0
/*
 * An fd on a namespace file (/proc/<pid>/ns/net opened): its name is what d_path() gives
 * for an nsfs file, "net:[4026531840]". crfs restores no namespace: the restored task
 * is in the caller's, so the fd is reopened as /proc/thread-self/ns/<type> and must be
 * the same namespace (inode number), else the restart is refused. Inode number 0, which
 * no namespace has, says "the restarted task's own, whichever it is": `crfs convert`
 * writes it for a CRIU dump, which names a namespace by an id of its own, and opening
 * the caller's own namespace file gives it nothing it did not have.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/magic.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "crfs.h"

#define NS_TYPE_MAX	32

/* "type:[inum]": the type in @type, the number in @inum; false if not of that form. */
static bool parse_ns_name(const char *name, char *type, u64 *inum)
{
	const char *colon = strchr(name, ':');
	size_t len = colon ? colon - name : 0;
	char num[24];
	size_t i, n;

	if (!len || len >= NS_TYPE_MAX || colon[1] != '[')
		return false;
	for (i = 0; i < len; i++)
		if (!(islower(name[i]) || name[i] == '_'))
			return false;
	n = strlen(colon + 2);
	if (n < 2 || n >= sizeof(num) || colon[2 + n - 1] != ']')
		return false;
	memcpy(num, colon + 2, n - 1);
	num[n - 1] = '\0';
	if (kstrtou64(num, 10, inum))
		return false;
	memcpy(type, name, len);
	type[len] = '\0';
	return true;
}

/* The caller's namespace file named @name, open as @flags; ERR_PTR, err_msg set. */
struct file *crfs_ns_open(struct crfs_image *img, const char *name, int flags,
			  int fd)
{
	char type[NS_TYPE_MAX], path[NS_TYPE_MAX + 24];
	struct file *file;
	u64 inum;

	if (!parse_ns_name(name, type, &inum)) {
		scnprintf(img->err_msg, sizeof(img->err_msg),
			  "fd %d: %.60s: not an absolute path", fd, name);
		return ERR_PTR(-EINVAL);
	}
	snprintf(path, sizeof(path), "/proc/thread-self/ns/%s", type);
	file = filp_open(path, flags | O_LARGEFILE, 0);
	if (IS_ERR(file)) {
		scnprintf(img->err_msg, sizeof(img->err_msg),
			  "fd %d: %.60s: no such namespace here", fd, name);
		return file;
	}
	if (file_inode(file)->i_sb->s_magic != NSFS_MAGIC ||
	    (inum && file_inode(file)->i_ino != inum)) {
		fput(file);
		scnprintf(img->err_msg, sizeof(img->err_msg),
			  "fd %d: %.60s: not the caller's namespace", fd, name);
		return ERR_PTR(-EXDEV);
	}
	return file;
}
