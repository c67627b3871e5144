// SPDX-License-Identifier: GPL-2.0
/*
 * The crfs module: /dev/crfs and its ioctls.
 *
 * /dev/crfs (a misc device, mode 0600) takes the ioctls of crfs_ioctl.h. Each call is
 * self-contained: the image is opened, copied in and validated (for CHECKPOINT:
 * written) by the calling task, and no state is kept between calls, but for a lazy
 * restore's, from its server's GO to its DONE or its file's release (crfs_lazy.c).
 */
#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>

#include "crfs.h"

static long crfs_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case CRFS_IOC_VERSION:
		return CRFS_ABI_VERSION;
	case CRFS_IOC_CHECK:
		return crfs_ioctl_image(argp, false);
	case CRFS_IOC_RESTART:
		return crfs_ioctl_image(argp, true);
	case CRFS_IOC_CHECKPOINT:
		return crfs_ioctl_checkpoint(argp);
	case CRFS_IOC_SNAPSHOT:
		return crfs_ioctl_snapshot(argp);
	case CRFS_IOC_RESTART_FILES:
		return crfs_ioctl_restart_files(argp);
	case CRFS_IOC_LAZY:
		return crfs_ioctl_lazy(file, argp);
	default:
		return -ENOTTY;
	}
}

/* a lazy restore's server ends: the processes it did not finish are killed (crfs_lazy.c) */
static int crfs_release(struct inode *inode, struct file *file)
{
	crfs_lazy_release(file);
	return 0;
}

static const struct file_operations crfs_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = crfs_ioctl,
	.release = crfs_release,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice crfs_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "crfs",
	.fops = &crfs_fops,
	.mode = 0600,
};

static int __init crfs_init(void)
{
	/* the record layouts must match the image format byte for byte */
	BUILD_BUG_ON(sizeof(struct ckpt_hdr) != 8);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_header) != 72);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_header_arch) != 16);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_objref) != 16);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_tree) != 16);
	BUILD_BUG_ON(sizeof(struct ckpt_pids) != 24);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_task) != 64);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_task_objs) != 32);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_thread) != 40);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_cpu) != 192);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_file) != 48);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_mm) != 120);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_vma) != 72);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_pgarr) != 16);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_mm_context) != 24);
	BUILD_BUG_ON(sizeof(struct ckpt_hdr_tail) != 16);
	BUILD_BUG_ON(sizeof(struct crfs_image_args) != 120);
	BUILD_BUG_ON(sizeof(struct crfs_checkpoint_args) != 120);
	BUILD_BUG_ON(sizeof(struct crfs_restart_args) != 136);
	BUILD_BUG_ON(sizeof(struct crfs_lazy_args) != 32);
	BUILD_BUG_ON(sizeof(struct crfs_lazy_range) != 24);
	BUILD_BUG_ON(PAGE_SIZE != CKPT_PAGE_SIZE);
	return misc_register(&crfs_misc);
}

static void __exit crfs_exit(void)
{
	misc_deregister(&crfs_misc);
	crfs_files_exit();
}

module_init(crfs_init);
module_exit(crfs_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("crfs: checkpoint, validate and restart linux-cr ckpt_hdr images");
MODULE_AUTHOR("crfs developers");
