/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The ioctl ABI of /dev/crfs (the crfs kernel module).
 *
 * crfs/kernel.py mirrors these numbers and struct layouts; tests/test_kmod_layout.py
 * compiles this header and checks that they agree.
 */
#ifndef CRFS_IOCTL_H
#define CRFS_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CRFS_IOC_MAGIC		0xC3	/* unregistered; only /dev/crfs interprets it */
#define CRFS_ABI_VERSION	1
#define CRFS_ERRMSG_LEN		96

/*
 * struct crfs_image_args - an image to check or restart.
 * @fd:		in: file descriptor of the image, open for reading (a regular file)
 * @flags:	in: 0, CRFS_RESTART_INHERIT or CRFS_RESTART_REPLACE (RESTART only;
 *		CHECK accepts them too)
 * @err_offset:	out: file offset of the record that failed, when the call failed on
 *		the image's contents
 * @err_type:	out: its CKPT_HDR_* type (0 when not known)
 * @task_index:	in: RESTART: the task to restore into the caller, an index into the
 *		image's TREE (0, the root, for a single-task image); CHECK: must be
 *		below the image's number of tasks. It was a reserved 0 field in ABI 1.
 * @err_msg:	out: NUL-terminated reason ("" on success)
 *
 * The out fields are written back on success and on an image error alike.
 */
struct crfs_image_args {
	__s32 fd;
	__u32 flags;
	__u64 err_offset;
	__u32 err_type;
	__u32 task_index;
	char err_msg[CRFS_ERRMSG_LEN];
};

/*
 * struct crfs_checkpoint_args - a stopped process (tree) to checkpoint, and where to.
 * @pid:	in: the process (in the caller's pid namespace), a thread group leader; a
 *		thread of the caller's process must be the ptracer of every thread written
 *		and each must be in a ptrace stop
 * @fd:		in: a regular file open for writing; the image is written at its position,
 *		which is advanced past it
 * @flags:	in: 0, or CRFS_CHECKPOINT_TREE: @pid and all its descendants
 * @__reserved:	in: must be 0
 * @written:	out: bytes written
 * @err_msg:	out: NUL-terminated reason ("" on success)
 *
 * The out fields are written back on success and on failure alike.
 */
struct crfs_checkpoint_args {
	__s32 pid;
	__s32 fd;
	__u32 flags;
	__u32 __reserved;	/* must be 0 */
	__u64 written;
	char err_msg[CRFS_ERRMSG_LEN];
};

/**
 * struct crfs_clone - a copy-on-write clone of a process to checkpoint.
 * @pid:	the process (as crfs_checkpoint_args.pid names processes)
 * @clone:	its clone: a child of @pid made by fork/clone without CLONE_VM while @pid
 *		was stopped, single-threaded, ptrace-stopped by the caller since (it never
 *		ran)
 */
struct crfs_clone {
	__s32 pid;
	__s32 clone;
};

/**
 * struct crfs_snapshot_args - CRFS_IOC_SNAPSHOT: CHECKPOINT, with the private memory of
 * each process read from its clone once the processes may run on.
 * @ck:		as CRFS_IOC_CHECKPOINT's argument (its out fields are written back)
 * @clones:	in: user pointer to @nr_clones struct crfs_clone; a process without a
 *		clone has all its memory written while it is stopped
 * @nr_clones:	in: at most CRFS_MAX_TASKS
 * @resume_fd:	in: an eventfd; 1 is added to it once everything the stopped processes
 *		alone can tell is written: from then on they may run, their clones be
 *		killed and reaped (the module holds their memory). An image whose header has
 *		CRFS_UFLAG_SNAPSHOT.
 * @spool_fd:	in: a regular file open for reading and writing (a memfd), empty: the
 *		records that follow the first page run read from a clone wait there until
 *		that run is written
 * @__reserved:	in: must be 0
 */
struct crfs_snapshot_args {
	struct crfs_checkpoint_args ck;
	__u64 clones;
	__u32 nr_clones;
	__s32 resume_fd;
	__s32 spool_fd;
	__u32 __reserved;
};

/*
 * crfs_image_args.flags: an fd of the image whose file cannot be reopened (a terminal or
 * other character device, a socket, a pipe whose other end is not in the process) takes
 * the caller's file at the same fd number, if the caller has that fd open without
 * close-on-exec. Without it such an fd refuses the restart (EOPNOTSUPP).
 */
#define CRFS_RESTART_INHERIT	0x1
/*
 * Every fd of the image that the caller has open without close-on-exec gets the caller's
 * file, whatever the image's file was (a restarted program writing to the restarter's
 * stdout rather than to its old log); implies CRFS_RESTART_INHERIT.
 */
#define CRFS_RESTART_REPLACE	0x2
/*
 * Lazy restart: the private writable anonymous memory of the image is mapped but not
 * filled. The restored process waits in the kernel, before its first instruction, until
 * its parent (the page server) has registered those ranges with a userfaultfd made by the
 * process before RESTART and said CRFS_LAZY_GO (CRFS_IOC_LAZY); the server then brings
 * the pages in from the image with UFFDIO_COPY.
 */
#define CRFS_RESTART_LAZY	0x4
#define CRFS_RESTART_FLAGS	(CRFS_RESTART_INHERIT | CRFS_RESTART_REPLACE | \
				 CRFS_RESTART_LAZY)

/*
 * struct crfs_handed_file - a file the caller made for a FILE object of the image.
 * @objref:	the FILE's objref in the image (its OBJREF record)
 * @fd:		the caller's fd of the file (any number; close-on-exec is fine)
 *
 * The kernel exports no way to make an eventfd, timerfd, signalfd or epoll file from a
 * module: the restarting process makes them itself (eventfd(2) with the count,
 * timerfd_create(2) + timerfd_settime(2), signalfd(2), epoll_create1(2) + epoll_ctl(2)
 * once the files it watches exist) and hands them in. RESTART checks that each is of
 * the kind its FILE record says and installs it at every fd of the image naming
 * @objref; a FILE shared with other processes of the tree takes the file handed in by
 * the first of them to restore (the others' are closed).
 */
struct crfs_handed_file {
	__s32 objref;
	__s32 fd;
};

#define CRFS_MAX_HANDED		4096	/* entries of crfs_restart_args.handed */

/*
 * struct crfs_restart_args - RESTART_FILES: RESTART with files handed in.
 * @image:	as CRFS_IOC_RESTART's argument (its out fields are written back)
 * @handed:	in: user pointer to @nr_handed struct crfs_handed_file, each objref once
 * @nr_handed:	in: at most CRFS_MAX_HANDED
 * @__reserved:	in: must be 0
 */
struct crfs_restart_args {
	struct crfs_image_args image;
	__u64 handed;
	__u32 nr_handed;
	__u32 __reserved;
};

/*
 * struct crfs_lazy_range - what a lazy restore left out (CRFS_LAZY_RANGES).
 * @addr:	first byte (page aligned)
 * @len:	bytes (whole pages)
 * @pos:	-1: a VMA to register (UFFDIO_REGISTER_MODE_MISSING); its pages that follow
 *		with @pos >= 0 are in the image at file offset @pos, the rest are zeros
 */
struct crfs_lazy_range {
	__u64 addr;
	__u64 len;
	__s64 pos;
};

/*
 * struct crfs_lazy_args - CRFS_IOC_LAZY, asked by the parent of a lazily restored process.
 * @pid:	in: the restored process (its leader), in the caller's pid namespace
 * @op:		in: CRFS_LAZY_RANGES, CRFS_LAZY_GO or CRFS_LAZY_DONE
 * @ranges:	in: RANGES: user pointer to @nr_ranges struct crfs_lazy_range
 * @nr_ranges:	in: RANGES: room in @ranges; out: how many ranges there are
 * @uffd:	in: GO: the userfaultfd the ranges are registered with; FORK: the
 *		userfaultfd of a process forked from it (UFFD_EVENT_FORK)
 * @__reserved:	in: must be 0
 */
struct crfs_lazy_args {
	__s32 pid;
	__u32 op;
	__u64 ranges;
	__u32 nr_ranges;
	__s32 uffd;
	__u64 __reserved;
};

#define CRFS_LAZY_RANGES	1	/* copy the ranges out */
#define CRFS_LAZY_GO		2	/* registered with @uffd: let the process run */
#define CRFS_LAZY_DONE		3	/* every page is in: forget it (and the ended ones) */
#define CRFS_LAZY_FORK		4	/* a fork's userfaultfd: kept until DONE, too */
#define CRFS_LAZY_MAX_FORKS	256	/* FORKs a restore (ENOSPC beyond) */

/* crfs_checkpoint_args.flags */
#define CRFS_CHECKPOINT_TREE	0x1	/* the process and its descendants, depth first */

/* returns CRFS_ABI_VERSION */
#define CRFS_IOC_VERSION	_IO(CRFS_IOC_MAGIC, 0)

/*
 * Copy the image in and validate it completely; nothing is changed. 0 when the image is a
 * sound linux-cr ckpt_hdr x86_64 image.
 */
#define CRFS_IOC_CHECK		_IOWR(CRFS_IOC_MAGIC, 1, struct crfs_image_args)

/*
 * Copy in, validate, then restore task @task_index of the image into the calling thread,
 * whose process must have its vdso where the image has it. A process tree is restarted
 * by forking one process per process of the image (parents first); a process with threads
 * by one thread per task, the leader's task in the main thread; each calls RESTART with
 * its own index (crfs-restart does). On success the call does not return to the caller's
 * code: the process runs the image (same pid, credentials; the image's fd table, or
 * without one fds 0-2 kept and every other fd closed). A failure after the point of no
 * return kills it with SIGKILL.
 */
#define CRFS_IOC_RESTART	_IOWR(CRFS_IOC_MAGIC, 2, struct crfs_image_args)

/*
 * RESTART with the files of struct crfs_restart_args.handed (ABI 1 modules without it
 * answer ENOTTY). The table is copied in and bounded, each fd taken, then checked against
 * the image before anything changes. errno, besides RESTART's:
 *   EINVAL	nr_handed above CRFS_MAX_HANDED, __reserved not 0, an objref twice or not a
 *		FILE of the image of a kind handed in (eventfd, timerfd, signalfd, epoll, a
 *		pipe end), a file not of the kind its record says or without its
 *		O_NONBLOCK, the ends of one pipe_objref not all handed in or of two pipes
 *		(err_msg names the objref)
 *   EBADF	an fd of the table is not open
 */
#define CRFS_IOC_RESTART_FILES	_IOWR(CRFS_IOC_MAGIC, 4, struct crfs_restart_args)

/*
 * The page server's side of a lazy restore (CRFS_RESTART_LAZY), asked through a /dev/crfs
 * file by the real parent of the restored process (or, in a tree restored lazily, by an
 * ancestor whose descendants down to it are all lazy restores), once its RESTART went
 * through (EOF on its report pipe): RANGES gives what to register and where the pages are
 * in the image; GO lends the module a reference to the userfaultfd and lets the process
 * run, after it has checked that every range is registered with that userfaultfd (else it
 * is killed). From RANGES (of a process not yet let go) or GO until DONE, the release of
 * the /dev/crfs file that asked (the server exits or dies) kills the process first, then
 * drops the userfaultfd: the program never runs on with zero pages where its own were.
 * FORK (after GO, by the file that said it) lends the module the userfaultfd of a process
 * the program forked, whose pages the server serves too. The release kills every
 * descendant of the server (the server is their subreaper) with the process, before the
 * userfaultfds are dropped. errno:
 *   ESRCH	no lazy restore of @pid waits (or it is gone), or GO/DONE/FORK not in
 *		order or FORK/DONE from another file than GO's
 *   ENOSPC	FORK: CRFS_LAZY_MAX_FORKS already lent
 *   EPERM	the caller is not the process's real parent (nor such an ancestor)
 *   EBADF	GO/FORK: @uffd is not open; EINVAL: it is not a userfaultfd, unknown @op,
 *		@__reserved not 0
 *   EFAULT	bad pointer
 */
#define CRFS_IOC_LAZY		_IOWR(CRFS_IOC_MAGIC, 5, struct crfs_lazy_args)

/*
 * Write a linux-cr ckpt_hdr x86_64 image of process @pid (every thread of it) and, with
 * CRFS_CHECKPOINT_TREE, of all its descendants, which the caller has stopped with ptrace,
 * to @fd (Mirkin's model: stopped processes checkpointed from outside). The tasks are in
 * the order of crfs's own checkpointer: processes depth first (a parent before its
 * children, children by pid), each its leader then its other threads by tid; zombies are
 * left out. The processes stay stopped; only 64-bit tasks are written. On failure part of
 * an image may have been written.
 */
#define CRFS_IOC_CHECKPOINT	_IOWR(CRFS_IOC_MAGIC, 3, struct crfs_checkpoint_args)

/*
 * Checkpoint with copy-on-write snapshots: the processes are stopped only until
 * @resume_fd is signalled, after the registers, files, signals, VMAs, shared memory and
 * everything else but the pages of private memory their clones hold (which are most of
 * an image) are written. Errors as CHECKPOINT's, and EINVAL for a clone that is not one
 * (err_msg says why), EBADF for @resume_fd or @spool_fd.
 */
#define CRFS_IOC_SNAPSHOT	_IOWR(CRFS_IOC_MAGIC, 6, struct crfs_snapshot_args)

/*
 * errno of CHECKPOINT:
 *   ESRCH	no process @pid (or it has exited; or a task has no mm, exiting)
 *   EPERM	a task to write (a thread of @pid, or with CRFS_CHECKPOINT_TREE of a
 *		descendant) is not ptraced by the caller or not in a ptrace stop; err_msg
 *		names it
 *   EBADF	fd is not an open file descriptor, or not open for writing
 *   EINVAL	not a regular file; @pid is a thread, not a process; flags other than
 *		CRFS_CHECKPOINT_TREE; __reserved not 0
 *   EOPNOTSUPP	more than 1024 tasks, a process sharing its mm with another process
 *		(CLONE_VM without CLONE_THREAD, vfork), a 32-bit task, FPU states of
 *		different sizes, an LDT, device/hugetlb or unknown special mappings
 *		(err_msg says)
 *   ENOMEM, EFAULT, EINTR (a fatal signal), and the errors of writing the file
 */

/*
 * errno of CHECK and RESTART:
 *   EBADF	fd is not an open file descriptor, or not open for reading
 *   EINVAL	not a regular file; flags not 0; task_index not below the number of
 *		tasks; the image is malformed (err_offset/err_type/err_msg say where and why)
 *   ENOEXEC	a sound image this module cannot restart (not x86_64, unknown version)
 *   EFBIG	the image is larger than the module accepts
 *   ENOMEM	out of memory (the copied-in metadata is bounded, see crfs.h)
 *   EIO	the image could not be read (or shrank while being read)
 *   EFAULT	bad argument pointer
 *   EINTR	interrupted by a fatal signal
 *   EOPNOTSUPP	RESTART only: a valid image this module does not restore (processes
 *		sharing an mm, 32-bit, LDT, SysV shm, fs/gs selectors) or a vdso elsewhere
 *		(err_msg says)
 *   EBUSY	RESTART only: the caller does not have one thread per task of the process
 *		(the leader's in its main thread) or shares its mm; the task is taken
 *   ECANCELED	RESTART of a thread: the call of another thread of the process failed
 *   ETIMEDOUT	RESTART of a thread: the other threads did not all call in time
 *   ENOENT, EACCES...	RESTART only: a mapped file, or a file of the fd table, cannot be
 *		opened by the caller (err_msg names the fd and the path)
 *   EMFILE	RESTART only: an fd of the image not below the caller's RLIMIT_NOFILE
 *   EOPNOTSUPP	also: an fd of a kind not restored, an eventfd, timerfd, signalfd or
 *		epoll not handed in (RESTART_FILES), or one that cannot be reopened (tty,
 *		socket, half pipe) and is not handed in
 */

#endif /* CRFS_IOCTL_H */
