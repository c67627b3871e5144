// SPDX-License-Identifier: GPL-2.0
/*
 * /proc/PID/exe of a restored process: MM.exe_objref.
 *
 * CHECKPOINT writes mm->exe_file as a generic FILE object (FILE_NAME + CRFS_FILE_ID) before
 * the MM record and names it in exe_objref; 0 (older images, other writers) keeps the
 * restarter's own executable, as before.
 *
 * RESTART, prepare (with the task's credentials): the name is opened as mapped files are
 * (a regular file, identity checked: ESTALE when it changed), on a mount that allows
 * exec, executable by the task (MAY_EXEC), and its write access denied as exec denies it
 * (ETXTBSY while someone has it open for writing). Who may name it: a caller with
 * CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN) over its user namespace, the kernel's rule
 * for prctl(PR_SET_MM_MAP)'s exe_fd; or, without them, when the image recorded the file's
 * identity and exec of that file as the task would give the task nothing it does not
 * have: readable (it is opened for reading as the task; exec of an unreadable file makes
 * the process undumpable), neither set-user-ID nor set-group-ID, no file capabilities.
 * Such a restart reaches nothing that exec of the file followed by ptrace of it would not
 * (docs/kmod.md).
 *
 * Act, in the leader once its memory is replaced (no mapping of the restarter's own
 * executable is left): mm->exe_file is swapped under the mmap write lock as the kernel's
 * replace_mm_exe_file() does, write access allowed again to the old file.
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/mount.h>
#include <linux/rcupdate.h>
#include <linux/xattr.h>

#include "crfs.h"

__printf(3, 4)
static int refuse(struct crfs_image *img, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(img->err_msg, sizeof(img->err_msg), fmt, args);
	va_end(args);
	return err;
}

/* The end of a long name: it says which file. */
static const char *tail(const char *name)
{
	size_t len = strlen(name);

	return len > 48 ? name + len - 48 : name;
}

/*
 * Why exec of @file by the task would change its credentials, or NULL (that it may read
 * it, so that exec leaves it dumpable, was checked by opening it).
 */
static const char *exec_gains(struct file *file)
{
	struct inode *inode = file_inode(file);
	struct user_namespace *userns = file_mnt_user_ns(file);
	umode_t mode = inode->i_mode;

	if (mode & S_ISUID || (mode & (S_ISGID | 0010)) == (S_ISGID | 0010))
		return "set-user-ID or set-group-ID";
	if (vfs_getxattr(userns, file->f_path.dentry, XATTR_NAME_CAPS, NULL, 0) >= 0)
		return "with file capabilities";
	return NULL;
}

static int check_exe(struct crfs_image *img, const struct crfs_file *f,
		     struct file *file, bool privileged)
{
	const char *why;
	int ret;

	if (file->f_path.mnt->mnt_flags & MNT_NOEXEC ||
	    file->f_path.mnt->mnt_sb->s_iflags & SB_I_NOEXEC)
		return refuse(img, -EACCES, "exe %s is on a noexec mount", tail(f->name));
	if (inode_permission(file_mnt_user_ns(file), file_inode(file), MAY_EXEC))
		return refuse(img, -EACCES, "exe %s: the task may not execute it",
			      tail(f->name));
	ret = crfs_file_id_check(img, f, file);
	if (ret || privileged)
		return ret;
	why = f->has_id ? exec_gains(file) : "its identity not recorded";
	if (why)
		return refuse(img, -EPERM, "exe %s: %s (needs CAP_CHECKPOINT_RESTORE)",
			      tail(f->name), why);
	return 0;
}

/*
 * The executable @f names, open, its write access denied; an ERR_PTR (img->err_msg says
 * why). Called with the task's credentials; @privileged: the caller's
 * checkpoint_restore_ns_capable().
 */
struct file *crfs_exe_prepare(struct crfs_image *img, const struct crfs_file *f,
			      bool privileged)
{
	struct file *file;
	int ret;

	file = crfs_open_regular(f->name, O_RDONLY);
	if (file == ERR_PTR(-EINVAL)) {
		refuse(img, -EINVAL, "exe %s is not a regular file", tail(f->name));
		return file;
	}
	if (IS_ERR(file)) {
		refuse(img, PTR_ERR(file), "cannot open exe %s", tail(f->name));
		return file;
	}
	ret = check_exe(img, f, file, privileged);
	if (!ret && exe_file_deny_write_access(file))
		ret = refuse(img, -ETXTBSY, "exe %s is open for writing", tail(f->name));
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

/* A prepared @exe not installed: write access allowed again, closed. */
void crfs_exe_release(struct file *exe)
{
	if (!exe)
		return;
	exe_file_allow_write_access(exe);
	fput(exe);
}

/* Makes @exe (prepared, its reference consumed) the caller's mm->exe_file. */
void crfs_exe_install(struct file *exe)
{
	struct mm_struct *mm = current->mm;
	struct file *old;

	mmap_write_lock(mm);
	old = rcu_replace_pointer(mm->exe_file, exe, lockdep_is_held(&mm->mmap_lock));
	mmap_write_unlock(mm);
	if (old) {
		/* as replace_mm_exe_file(): not while dup_mmap() takes it */
		mmap_read_lock(mm);
		exe_file_allow_write_access(old);
		fput(old);
		mmap_read_unlock(mm);
	}
}
