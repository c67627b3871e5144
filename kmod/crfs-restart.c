// SPDX-License-Identifier: GPL-2.0
/*
 * crfs-restart: become the process of a checkpoint image, through /dev/crfs.
 *
 *   crfs-restart [-d DEVICE] [-r FD] [-N] [-S] [-R] [-A] [-T] [-L|--lazy]
 *                [-i IMAGEFD=FD]... IMAGE
 *
 * Built static by `make -C kmod` (no dynamic loader, few mappings). It:
 *   1. turns address-space randomization off (personality ADDR_NO_RANDOMIZE) and
 *      re-executes itself once, so that its own layout is the same on every run;
 *   2. reads the vdso address of the image's mm (MM_CONTEXT) and moves its own
 *      [vvar] + [vdso] there with mremap (the kernel cannot map a vdso from a module:
 *      the restored program's libc holds pointers into it);
 *   3. opens DEVICE (/dev/crfs), checks CRFS_IOC_VERSION, and calls CRFS_IOC_RESTART.
 *
 * On success the ioctl does not come back here: this process is the restored program,
 * with the image's fds when the image has a file table (else the same stdin, stdout and
 * stderr); every other fd (the image, the device, FD) is closed by the kernel. An fd of
 * the image that cannot be reopened (a terminal, a socket, a pipe whose other end was
 * not checkpointed) takes this process's fd of the same number (CRFS_RESTART_INHERIT):
 * its stdin, stdout, stderr, and each IMAGEFD given with -i, which gets FD's file. Every
 * other fd of this process is made close-on-exec first, which keeps it from being handed
 * in. -S (strict) hands in nothing: such an fd fails the restart. -R (replace): every fd
 * handed in replaces the image's fd of that number, whatever it was (CRFS_RESTART_REPLACE;
 * e.g. the program's stdout becomes this one's even if it was a file). -A makes and hands
 * in no eventfd, timerfd, signalfd or epoll (see "anon-inode files"): the kernel then
 * refuses an image holding one. -T makes none of the image's POSIX timers, which each
 * process otherwise creates and arms before its RESTART (crfs-restart-timers.h), nor its
 * ITIMER_VIRTUAL/ITIMER_PROF, which it otherwise arms likewise: the
 * kernel then refuses an image with one. On failure it prints one line on stderr and, with -r,
 * writes a 128-byte report on FD (errno, err_offset, err_type, stage[16], reason[96];
 * little-endian, as crfs/kernel.py reads it), then exits with status 1.
 *
 * Pids: when the kernel lets it (clone3() with set_tid needs CAP_CHECKPOINT_RESTORE over
 * the pid namespace, and the pid must be free), every process and thread gets its pid
 * from the image, as CRIU does: the root task runs in a child created with its pid, and
 * this process stays as its parent, relaying its report (on success a report with errno
 * 0, stage "restored" and reason "pid N"), then its exit status. Otherwise, or with -N,
 * the restored tasks have new pids and this process is the root task itself.
 *
 * An image of several processes (TREE) is restarted as a tree: before step 2 each process
 * forks the children its task has in the image (DFS order, so parents first), each child
 * does the same for its own, and every process restores the task of its index
 * (task_index): the restored parent is the real parent of its restored children, with new
 * pids. All the processes wait at a barrier, set up and with their vdso moved, then call
 * RESTART together. They share FD: it reaches EOF once every process was restored. A
 * failure (its reason says "task N: ...") is reported, then kills every process of the
 * tree by pid (a table they share), restored processes included. Each child is forked
 * with its exit signal of the image (TASK.exit_signal, 0..64: a zombie's, or a live
 * process's with a TASK_MISC record); the root's parent is not in the image: SIGCHLD.
 *
 * Sessions and process groups of the TREE (vsid, vpgid) are rebuilt: a session leader
 * calls setsid() and a group leader setpgid(0, 0) before forking its children; a process
 * of another group joins it after the barrier (every group exists then), image pids
 * mapped to the pids the processes got. A process keeps its parent's session; a group
 * not in the image is the restarter's (the root's). Any other layout is refused.
 *
 * --lazy (-L): the pages of the image's private writable anonymous memory come after the
 * program runs, through userfaultfd, from this process as their server (crfs-restart-lazy.h),
 * for every process of a tree: each sends the server a userfaultfd of its own mm.
 *
 * A process with threads in the image (tasks of one tgid) is restored by as many threads:
 * its main thread restores the leader's task after it has started one thread per other
 * task, each calling RESTART with its own index. The kernel has them meet: the leader
 * rebuilds the memory while they wait. A call that fails with ECANCELED failed because
 * another one did, which reports the cause: it only waits to be killed with the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "crfs_ioctl.h"

#define HDR_BUFFER	4	/* CKPT_HDR_BUFFER */
#define HDR_TREE	101	/* CKPT_HDR_TREE */
#define HDR_TASK	102	/* CKPT_HDR_TASK */
#define HDR_MM_CONTEXT	404	/* CKPT_HDR_MM_CONTEXT */
#define MAX_TASKS	1024	/* CRFS_MAX_TASKS */
#define HDR_TASK_MISC	8050	/* CRFS_HDR_TASK_MISC */
#define HDR_TAIL	9001	/* CKPT_HDR_TAIL */
#define EXIT_ZOMBIE_26	16	/* TASK.exit_state of a zombie (2.6 kernels' EXIT_ZOMBIE) */

struct pids {			/* struct ckpt_pids */
	int vpid, vppid, vtgid, vpgid, vsid, depth;
};

struct report {
	int32_t err;
	uint64_t offset;
	uint32_t type;
	char stage[16];
	char reason[96];
} __attribute__((packed));

/* struct clone_args of clone3(2), up to set_tid_size (CLONE_ARGS_SIZE_VER1) */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size;
};

#define THREAD_FLAGS	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | \
			 CLONE_SYSVSEM)
#define THREAD_STACK	(64 * 1024)

static int report_fd = -1;
static unsigned int restart_flags = CRFS_RESTART_INHERIT;

#define MAX_INHERIT	64
static int nr_inherit;
static int inherit_image[MAX_INHERIT], inherit_from[MAX_INHERIT];
static int image_pids = 1;		/* try to give the tasks their pids (not -N) */
static struct pids pids[MAX_TASKS];	/* the image's TREE */
static int nr_tasks = 1;		/* in the image */
static int nr_procs = 1;		/* > 1: a tree of processes is restarted */
static int leader_of[MAX_TASKS];	/* the index of each task's thread group leader */
static int parent_of[MAX_TASKS];	/* leaders: the index of their parent's leader */
static __thread unsigned int task_index;	/* the task this thread restores */
static char zombie[MAX_TASKS];		/* leaders that had exited: they exit again */
static uint32_t exit_status[MAX_TASKS];	/* of zombies, as wait() gives it */
static uint32_t exit_signal[MAX_TASKS];	/* of processes: the signal their parent gets */
static pid_t child_pid[MAX_TASKS];	/* the processes this one forked */
static pid_t *real_pid;			/* shared by the tree: each process's pid, by task */
static pid_t outer_pgid;		/* the root's group before the restart */
#define TABLE_HINT	((void *)0x10000000000UL)	/* 1 TiB: real_pid's address */

/*
 * Kill every process of the tree, then this one: one by one, as they may have left our
 * process group and session.
 */
static void kill_tree(void)
{
	pid_t self = getpid();
	int k;

	for (k = 0; real_pid && k < nr_tasks; k++)
		if (real_pid[k] > 0 && real_pid[k] != self)
			kill(real_pid[k], SIGKILL);
	kill(self, SIGKILL);
}

/*
 * Report a failure of task @index and end (the whole tree if there is one). Threads
 * started by thread_as() share the main thread's TLS: nothing here depends on it.
 */
static void fail_task(unsigned int index, const char *stage, int err, const char *reason,
		      uint64_t offset, uint32_t type)
{
	struct report r = { .err = err, .offset = offset, .type = type };

	if (err == ECANCELED)
		sleep(10);	/* the call that failed first reports, and kills us */
	strncpy(r.stage, stage, sizeof(r.stage) - 1);
	if (nr_tasks > 1)
		snprintf(r.reason, sizeof(r.reason), "task %u: %s", index,
			 reason ? reason : "");
	else
		strncpy(r.reason, reason ? reason : "", sizeof(r.reason) - 1);
	fprintf(stderr, "crfs-restart: %s: %s%s%s\n", stage, strerror(err),
		*r.reason ? ": " : "", r.reason);
	if (report_fd >= 0 && write(report_fd, &r, sizeof(r)) != sizeof(r))
		perror("crfs-restart: report");
	if (nr_procs > 1)
		kill_tree();
	_exit(1);		/* every thread of the process */
}

static void fail(const char *stage, int err, const char *reason, uint64_t offset,
		 uint32_t type)
{
	fail_task(task_index, stage, err, reason, offset, type);
}

/*
 * The vdso of the mm defined by task @index (the MM_CONTEXT after its TASK record), 0 if
 * none: the records are framed by {type, len}.
 */
static uint64_t image_vdso(int fd, unsigned int index)
{
	uint32_t hdr[2];
	uint64_t vdso;
	off_t pos = 0;
	long long task = -1;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_TASK && ++task > index)
			return 0;
		if (hdr[0] == HDR_MM_CONTEXT && task == index) {
			if (pread(fd, &vdso, sizeof(vdso), pos + 8) != sizeof(vdso))
				return 0;
			return vdso;
		}
		pos += hdr[1];
	}
	return 0;	/* the kernel judges the image */
}

/*
 * Read the image's TREE into pids[], nr_tasks, nr_procs, leader_of[] and parent_of[].
 * Anything odd (a short record, a thread without its leader) leaves nr_tasks at 1 and
 * no pid to restore: the kernel then judges the image for task 0.
 */
static int parse_tree(int fd)
{
	uint32_t hdr[2];
	int nr;
	off_t pos = 0;
	char why[96];
	int i, j;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr) &&
	       hdr[0] != HDR_TREE)
		pos += hdr[1];
	if (hdr[0] != HDR_TREE || pread(fd, &nr, sizeof(nr), pos + 8) != sizeof(nr) ||
	    nr < 1 || nr > MAX_TASKS)
		return 0;
	pos += hdr[1];
	if (pread(fd, hdr, sizeof(hdr), pos) != sizeof(hdr) || hdr[0] != HDR_BUFFER ||
	    hdr[1] != 8 + nr * sizeof(pids[0]) ||
	    pread(fd, pids, nr * sizeof(pids[0]), pos + 8) != (ssize_t)(nr * sizeof(pids[0])))
		return 0;
	for (i = 0; i < nr; i++) {
		for (j = 0; j < nr && (pids[j].vpid != pids[i].vtgid ||
				       pids[j].vtgid != pids[j].vpid); j++)
			;
		if (j == nr)
			return 0;
		leader_of[i] = j;
	}
	if (leader_of[0] != 0)
		return 0;
	for (i = 1; i < nr; i++) {
		if (leader_of[i] != i)
			continue;
		nr_procs++;
		for (j = i - 1; j >= 0 && (leader_of[j] != j || pids[j].vpid != pids[i].vppid);
		     j--)
			;
		if (j < 0) {
			snprintf(why, sizeof(why),
				 "task %d (pid %d): its parent %d is not in the image", i,
				 pids[i].vpid, pids[i].vppid);
			nr_procs = 1;
			fail("tree", EOPNOTSUPP, why, UINT64_MAX, 0);
		}
		parent_of[i] = j;
	}
	nr_tasks = nr;
	return 1;
}

/*
 * The zombies of the tree: processes of one task, not the root, whose TASK has an
 * exit_state. Their wait status must be one an exit gives: a code, or a signal that
 * ends a process.
 */
static void check_zombie(unsigned int task, const uint32_t *t, off_t pos)
{
	int sig = t[2] & 0x7f;
	char why[96];

	if ((sig && (t[2] & ~0xffU)) || (!sig && (t[2] & ~0xff00U)) || sig == 0x7f) {
		snprintf(why, sizeof(why), "zombie exit status %#x", t[2]);
		nr_procs = 1;	/* not a group leader yet: kill nothing */
		fail_task(task, "tree", EINVAL, why, pos, HDR_TASK);
	}
	zombie[task] = 1;
	exit_status[task] = t[2];
}

/*
 * The exit_signal of process @task (not the root, whose parent is not in the image): a
 * zombie's, or a live one's when the image has its TASK_MISC (an image written before
 * it, by crfs checkpoint, had 0 there: SIGCHLD then). 0..64, as clone3() takes it.
 */
static void check_exit_signal(unsigned int task, uint32_t sig, int misc, off_t pos)
{
	char why[96];

	if (!task || leader_of[task] != (int)task || (!zombie[task] && !misc))
		return;
	if (sig > 64) {
		snprintf(why, sizeof(why), "exit_signal %u", sig);
		nr_procs = 1;
		fail_task(task, "tree", EINVAL, why, pos, HDR_TASK);
	}
	exit_signal[task] = sig;
}

/* The records of each task: its zombie exit, its exit_signal. */
static void read_zombies(int fd)
{
	uint32_t hdr[2], t[4];	/* TASK: state, exit_state, exit_code, exit_signal */
	off_t pos = 0, task_pos = 0;
	int task = -1, misc = 0;
	int k;

	for (k = 0; k < nr_tasks; k++)
		exit_signal[k] = SIGCHLD;
	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr) &&
	       hdr[0] != HDR_TAIL) {
		if (hdr[0] == HDR_TASK_MISC)
			misc = 1;
		if (hdr[0] == HDR_TASK && task >= 0)
			check_exit_signal(task, t[3], misc, task_pos);
		if (hdr[0] == HDR_TASK && task + 1 < nr_tasks &&
		    pread(fd, t, sizeof(t), pos + 8) == sizeof(t)) {
			task_pos = pos;
			misc = 0;
			if (++task > 0 && t[1] == EXIT_ZOMBIE_26 && leader_of[task] == task)
				check_zombie(task, t, pos);
		}
		pos += hdr[1];
	}
	if (task >= 0)
		check_exit_signal(task, t[3], misc, task_pos);
}

/* The index of the process (thread group leader) of pid @vpid in the image, -1 if none */
static int task_of_pid(int vpid)
{
	int j;

	for (j = 0; j < nr_tasks; j++)
		if (leader_of[j] == j && pids[j].vpid == vpid)
			return j;
	return -1;
}

/*
 * Can the session and group of process @k be rebuilt? A session leader leads its group;
 * any other process has its parent's session (the restarter's, for the root); its group
 * is its own, one led by a process of the image in its session, or the root's when the
 * root's is not in the image (the restarter's then).
 */
static void check_ids(int k)
{
	const struct pids *p = &pids[k];
	int g = task_of_pid(p->vpgid);
	const char *why = NULL;
	char msg[96];

	if (p->vsid == p->vpid && p->vpgid != p->vpid)
		why = "a session leader out of its group";
	else if (k && p->vsid != p->vpid && p->vsid != pids[parent_of[k]].vsid)
		why = "a session not its parent's";
	else if (g >= 0 && (pids[g].vsid != p->vsid || pids[g].vpgid != pids[g].vpid))
		why = "a group whose leader is elsewhere";
	else if (k && g < 0 && (p->vpgid != pids[0].vpgid || p->vsid != pids[0].vsid))
		why = "a group with no leader in the image";
	if (!why)
		return;
	snprintf(msg, sizeof(msg), "pid %d pgid %d sid %d: %s", p->vpid, p->vpgid, p->vsid,
		 why);
	nr_procs = 1;	/* nothing forked yet: kill nothing */
	fail_task(k, "tree", EOPNOTSUPP, msg, UINT64_MAX, 0);
}

/* Before it forks: a session leader makes its session, a group leader its group. */
static void enter_session(void)
{
	const struct pids *p = &pids[task_index];

	if (!p->vpid)
		return;		/* no TREE */
	if (p->vsid == p->vpid) {
		if (getsid(0) != getpid() && setsid() < 0)
			fail("tree", errno, "cannot make its session", UINT64_MAX, 0);
	} else if (p->vpgid == p->vpid && setpgid(0, 0)) {
		fail("tree", errno, "cannot make its process group", UINT64_MAX, 0);
	}
}

/* Once every group leader made its group: join the group led by another process. */
static void join_group(void)
{
	const struct pids *p = &pids[task_index];
	int g;
	pid_t want;

	if (!p->vpid || p->vpgid == p->vpid)
		return;
	g = task_of_pid(p->vpgid);
	want = g >= 0 && real_pid ? real_pid[g] : outer_pgid;
	if (want > 0 && getpgrp() != want && setpgid(0, want))
		fail("tree", errno, "cannot join its process group", UINT64_MAX, 0);
}

/* parse_tree(), or nothing of the TREE */
static void read_tree(int fd)
{
	int k;

	if (!parse_tree(fd)) {
		memset(pids, 0, sizeof(pids));
		nr_procs = 1;
		return;
	}
	read_zombies(fd);
	for (k = 0; k < nr_tasks; k++)
		if (leader_of[k] == k)
			check_ids(k);
}

/* ---------------------------------------------------------------- image pids */

/* clone3() with set_tid = @pid: only errors that say "not this pid" allow a plain fork */
static int pid_refused(long err)
{
	return err == -EPERM || err == -EEXIST || err == -EINVAL || err == -ENOSYS ||
	       err == -E2BIG;
}

/*
 * A child process (a fork) with pid @want (0: any) whose exit sends its parent @sig, or
 * -1 and errno. The raw clone3() leaves
 * glibc's cached tid of the child stale: crfs-restart does not use it (no raise(), no
 * pthread_kill()).
 */
static pid_t fork_with_pid(pid_t want, uint32_t sig)
{
	struct clone3_args a = {
		.exit_signal = sig,
		.set_tid = want > 0 ? (uintptr_t)&want : 0,
		.set_tid_size = want > 0,
	};

	return syscall(SYS_clone3, &a, sizeof(a));
}

/* fork() without the image's pid: a raw clone3() only for an exit signal not SIGCHLD */
static pid_t fork_sig(uint32_t sig)
{
	return sig == SIGCHLD ? fork() : fork_with_pid(0, sig);
}

/*
 * fork() with exit signal @sig, the child getting pid @want when the kernel lets us;
 * otherwise a new pid.
 */
static pid_t fork_as(pid_t want, uint32_t sig)
{
	pid_t pid;

	if (!image_pids || want <= 0)
		return fork_sig(sig);
	pid = fork_with_pid(want, sig);
	if (pid < 0 && pid_refused(-errno))
		return fork_sig(sig);
	return pid;
}

/*
 * A thread with tid *@tid running @fn(@arg) on @stack: the raw clone3() returns twice,
 * and the new thread must not return into this function's frame, so both paths are in
 * the asm. The thread has no TLS of its own (it shares the main thread's fs base). @fn
 * returns only on a failure, which ends the process. The tid, or -errno.
 */
static long thread_as(pid_t *tid, void *stack, size_t size, void (*fn)(void *), void *arg)
{
	struct clone3_args a = {
		.flags = THREAD_FLAGS,
		.stack = (uintptr_t)stack,
		.stack_size = size,
		.set_tid = (uintptr_t)tid,
		.set_tid_size = 1,
	};
	register void (*entry)(void *) __asm__("r12") = fn;
	register void *data __asm__("r13") = arg;
	long ret;

	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "mov %%r13, %%rdi\n\t"
			 "call *%%r12\n\t"
			 "mov $231, %%eax\n\t"	/* exit_group(1) */
			 "mov $1, %%edi\n\t"
			 "syscall\n"
			 "1:"
			 : "=a"(ret)
			 : "0"((long)SYS_clone3), "D"(&a), "S"(sizeof(a)), "r"(entry),
			   "r"(data)
			 : "rcx", "r11", "memory");
	return ret;
}

/* ioctl() without errno: thread_as() threads have no errno of their own */
static long raw_ioctl(int fd, unsigned long request, void *arg)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_ioctl), "D"((long)fd), "S"(request), "d"(arg)
			 : "rcx", "r11", "memory");
	return ret;
}

static int read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	return got;
}

/*
 * The parent of a root task restored with its image pid: pass its report on (or, at EOF,
 * the news that the restore went through, with the pid), then end as it ends.
 */
/* Wait for the restored @root and end as it ended. */
static void relay_wait(pid_t root)
{
	int status = 0;
	pid_t got;

	while ((got = waitpid(root, &status, 0)) < 0 && errno == EINTR)
		;
	if (got == root && WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		kill(getpid(), WTERMSIG(status));
	}
	_exit(got == root && WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static void relay(pid_t root, int from)
{
	struct report r;

	prctl(PR_SET_DUMPABLE, 0);	/* no core of ours if we die of its signal */
	if (read_full(from, &r, sizeof(r)) == sizeof(r)) {
		if (report_fd >= 0 && write(report_fd, &r, sizeof(r)) != sizeof(r))
			perror("crfs-restart: report");
	} else if (report_fd >= 0) {
		memset(&r, 0, sizeof(r));
		r.offset = UINT64_MAX;
		strcpy(r.stage, "restored");
		snprintf(r.reason, sizeof(r.reason), "pid %d", (int)root);
		if (write(report_fd, &r, sizeof(r)) != sizeof(r))
			perror("crfs-restart: report");
	}
	if (report_fd >= 0)
		close(report_fd);
	close(from);
	relay_wait(root);
}

#include "crfs-restart-lazy.h"


/*
 * Give the root task its image pid: a child created with it goes on restoring (it dies
 * with us), and this process becomes its relay(), without @dev and @image (so that
 * nothing of ours holds the module). Nothing changes when the kernel does not allow the
 * pid.
 */
static void root_with_image_pid(int dev, int image)
{
	pid_t want = pids[0].vpid, parent = getpid(), pid = -1;
	int link[2], sock[2] = { -1, -1 };
	int with_pid = image_pids && want > 0 && want != parent;

	if ((!with_pid && !lazy) || pipe2(link, O_CLOEXEC))
		return;
	if (lazy && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock))
		fail("lazy", errno, "socketpair", UINT64_MAX, 0);
	if (with_pid)
		pid = fork_with_pid(want, SIGCHLD);
	if (pid < 0 && lazy)
		pid = fork();	/* --lazy needs a server: the program gets a new pid */
	if (pid < 0) {
		if (lazy)
			fail("lazy", errno, "cannot fork", UINT64_MAX, 0);
		close(link[0]);
		close(link[1]);
		return;
	}
	if (pid > 0) {
		close(link[1]);
		if (lazy) {
			close(sock[1]);
			lazy_serve(pid, link[0], sock[0], dev, image);
		}
		close(dev);
		close(image);
		relay(pid, link[0]);
	}
	close(link[0]);
	if (report_fd >= 0)
		close(report_fd);
	report_fd = link[1];
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
		_exit(1);
	if (real_pid)
		real_pid[0] = getpid();
	if (lazy) {
		close(sock[0]);
		lazy_sock = sock[1];	/* each process sends its userfaultfd: lazy_send_uffd() */
		restart_flags |= CRFS_RESTART_LAZY;
	}
}

/* ---------------------------------------------------------------- tree */

/*
 * A zombie of the image: end again as it ended (its parent waits for it as before),
 * once it told the root it was set up. A signal with no core dump: no core file is
 * written, and WCOREDUMP() is not kept.
 */
static void exit_as_zombie(int ready)
{
	struct rlimit none = { 0, 0 };
	int sig = exit_status[task_index] & 0x7f;
	sigset_t all;

	if (write(ready, "r", 1) != 1)
		_exit(1);
	if (!sig)
		_exit(exit_status[task_index] >> 8 & 0xff);
	setrlimit(RLIMIT_CORE, &none);
	signal(sig, SIG_DFL);
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	syscall(SYS_kill, (pid_t)syscall(SYS_getpid), sig);
	_exit(128 + sig);	/* a signal whose default action is not to end */
}

/* Our zombie children: exited before we go on (their SIGCHLD is then dropped). */
static void wait_zombies(void)
{
	siginfo_t info;
	int k;

	for (k = task_index + 1; k < nr_tasks; k++)
		while (zombie[k] && parent_of[k] == (int)task_index &&
		       waitid(P_PID, child_pid[k], &info, WEXITED | WNOWAIT | __WALL) &&
		       errno == EINTR)
			;
}

/*
 * Fork the processes of the tree: each one forks the children of its task, in image
 * order, and each child goes on with its own. Children keep @ready[1] to say they are set
 * up and wait for EOF on @go[0], whose write end only the root keeps.
 */
static void fork_tree(int ready[2], int go[2])
{
	unsigned int k;
	pid_t pid;

again:
	for (k = task_index + 1; k < (unsigned int)nr_tasks; k++) {
		if (leader_of[k] != (int)k || parent_of[k] != (int)task_index)
			continue;
		pid = fork_as(pids[k].vpid, exit_signal[k]);
		if (pid < 0)
			fail("fork", errno, "cannot fork a task of the tree", UINT64_MAX, 0);
		child_pid[k] = pid;
		if (pid > 0)
			real_pid[k] = pid;
		if (pid == 0) {
			task_index = k;
			real_pid[k] = getpid();
			enter_session();
			if (go[1] >= 0) {
				close(go[1]);
				close(ready[0]);
				go[1] = -1;
				ready[0] = -1;
			}
			if (zombie[k]) {
				join_group();	/* its leader is set up, if forked before it */
				exit_as_zombie(ready[1]);
			}
			goto again;
		}
	}
}

/* Every process set up: the root lets all of them call RESTART at once. */
static void barrier(int ready[2], int go[2])
{
	int got = 0;
	ssize_t n;
	char c;

	wait_zombies();
	if (task_index) {
		if (write(ready[1], "r", 1) != 1)
			fail("tree", errno, "cannot signal the root", UINT64_MAX, 0);
		close(ready[1]);
		while ((n = read(go[0], &c, 1)) < 0 && errno == EINTR)
			;
		close(go[0]);
		return;
	}
	close(ready[1]);
	while (got < nr_procs - 1) {
		n = read(ready[0], &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail("tree", ECHILD, "a process of the tree died before its restart",
			     UINT64_MAX, 0);
		got++;
	}
	close(ready[0]);
	close(go[1]);
	close(go[0]);
}

struct area {
	unsigned long start, end;
};

/* Our [vvar] and [vdso]; 0 if other mappings of ours lie in [lo, hi). */
static int own_maps(struct area *vvar, struct area *vdso, unsigned long lo,
		    unsigned long hi)
{
	char line[512], name[256];
	unsigned long start, end;
	int clash = 0;
	FILE *f;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		name[0] = '\0';
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &start, &end, name) < 2)
			continue;
		if (!strncmp(name, "[vvar", 5))
			*vvar = (struct area){ start, end };
		else if (!strcmp(name, "[vdso]"))
			*vdso = (struct area){ start, end };
		else if (start < hi && end > lo)
			clash = 1;
	}
	fclose(f);
	return clash ? -EBUSY : 0;
}

static void move(struct area *a, unsigned long to)
{
	void *p;

	if (a->start == to || a->end == a->start)
		return;
	p = mremap((void *)a->start, a->end - a->start, a->end - a->start,
		   MREMAP_MAYMOVE | MREMAP_FIXED, (void *)to);
	if (p == MAP_FAILED)
		fail("vdso", errno, "mremap of [vvar]/[vdso] failed", UINT64_MAX, 0);
	a->end = to + (a->end - a->start);
	a->start = to;
}

/* Move our [vvar] + [vdso] so that the vdso starts at @target. */
static void place_vdso(uint64_t target)
{
	struct area vvar = { 0, 0 }, vdso = { 0, 0 };
	unsigned long below, size, lo, hi;
	char why[96];
	void *tmp;

	own_maps(&vvar, &vdso, 0, 0);
	if (!target || !vdso.start || vdso.start == target)
		return;
	below = vvar.end == vdso.start ? vvar.end - vvar.start : 0;
	size = below + vdso.end - vdso.start;
	lo = target - below;
	hi = lo + size;
	if (target < below || own_maps(&vvar, &vdso, lo, hi)) {
		snprintf(why, sizeof(why), "image vdso %#" PRIx64 " collides with the restarter",
			 target);
		fail("vdso", EBUSY, why, UINT64_MAX, 0);
	}
	if (lo < vdso.end && hi > vvar.start) {
		/* overlapping moves: through a free area first */
		tmp = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (tmp == MAP_FAILED)
			fail("vdso", errno, "no room to move the vdso", UINT64_MAX, 0);
		move(&vdso, (unsigned long)tmp + below);
		if (below)
			move(&vvar, (unsigned long)tmp);
	}
	move(&vdso, target);
	if (below)
		move(&vvar, lo);
}

/* ---------------------------------------------------------------- anon-inode files */

/*
 * The eventfds, timerfds, signalfds and epolls of our task's file table: the kernel
 * exports no way for the module to make them, so each process makes its own here (as
 * CRIU does) and hands them in with CRFS_IOC_RESTART_FILES as (objref, fd) pairs; the
 * module checks each against the image and installs it at its fds. Values come from the
 * FILE records: an eventfd's count, a timerfd's clock, remaining time, interval and
 * unread expirations (a relative timer continues from where it was), a signalfd's mask,
 * an epoll's watch list (EPOLL_ITEMS after its file table). A pipe an epoll watches is
 * made here too (epoll_ctl(2) needs it) with the bytes of its PIPE_BUF, and every end of
 * it handed in. The records are read by their frames only; the kernel judges them.
 */
#define HDR_OBJREF	6	/* CKPT_HDR_OBJREF */
#define HDR_TASK_OBJS	104
#define HDR_FILE_DESC	302
#define HDR_FILE	304
#define HDR_PIPE_BUF	305
#define HDR_EPOLL_ITEMS	308
#define OBJ_FILE_TABLE	2
#define OBJ_FILE	3
#define FILE_PIPE	2	/* ckpt_hdr_file.f_type */
#define FILE_EPOLL	6
#define FILE_EVENTFD	7
#define FILE_TIMERFD	100
#define FILE_SIGNALFD	101
#define FILE_HDR_LEN	48	/* struct ckpt_hdr_file */
#define MAX_ITEMS	65536	/* watches of one epoll */
#define MAX_PIPE_BUF	1048576	/* CRFS_MAX_PIPE_BUF */
#define PIPE_DEF_LOG2	16	/* a pipe's default capacity: 64 KiB */
#define PIPE_NO_READER	0x1	/* pipe_flags: no process had this end open */
#define PIPE_NO_WRITER	0x2
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS	_IOW('T', 0, uint64_t)
#endif

struct anon {
	int32_t objref;
	uint32_t f_type;
	off_t pos;		/* its FILE record */
	int32_t table;		/* the last file table naming it */
	int tables;		/* file tables naming it */
	int mine;		/* named by our task's table */
	int fd;			/* made here, or -1 */
	off_t items;		/* an epoll: its EPOLL_ITEMS record, or 0 */
	int32_t pipe;		/* a pipe end: its pipe_objref */
	off_t buf;		/* ... its PIPE_BUF record if the pipe's first end, or 0 */
	uint16_t pipe_flags;	/* ... PIPE_NO_* */
	uint8_t size_log2;	/* ... its capacity, 1 << it bytes (0: not known) */
	uint32_t f_flags;
};

struct epoll_item {		/* struct ckpt_eventpoll_item */
	uint64_t data;
	uint32_t fd;
	int32_t file_objref;
	uint32_t events;
	uint32_t pad;
};

static struct anon anons[CRFS_MAX_HANDED];
static int nr_anons;
static struct crfs_handed_file handed[CRFS_MAX_HANDED];
static int no_anon;		/* -A: none made, none handed in */
static int nr_handed;

static void anon_fail(int err, const char *fmt, int a, int b)
{
	char why[96];

	snprintf(why, sizeof(why), fmt, a, b);
	fail("anon-files", err, why, UINT64_MAX, 0);
}

static struct anon *anon_of(int32_t objref)
{
	int i;

	for (i = 0; i < nr_anons; i++)
		if (anons[i].objref == objref)
			return &anons[i];
	return NULL;
}

/* TASK_OBJS.files_objref of task @index, 0 if none */
static int32_t files_of(int fd, unsigned int index)
{
	uint32_t hdr[2];
	int32_t ref;
	off_t pos = 0;
	long long task = -1;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_TASK)
			task++;
		if (hdr[0] == HDR_TASK_OBJS && task == index)
			return pread(fd, &ref, sizeof(ref), pos + 8) == sizeof(ref) ? ref : 0;
		pos += hdr[1];
	}
	return 0;
}

/* A FILE record of objref @objref, @len bytes at @pos: noted if an anon file or pipe. */
static void note_file(int fd, off_t pos, uint32_t len, int32_t objref)
{
	uint32_t f[3];	/* f_type, f_mode, f_flags */
	uint32_t next[2];
	struct anon *a;

	if (objref <= 0 || anon_of(objref) || pread(fd, f, sizeof(f), pos + 8) != sizeof(f))
		return;
	if (f[0] != FILE_EVENTFD && f[0] != FILE_EPOLL && f[0] != FILE_TIMERFD &&
	    f[0] != FILE_SIGNALFD && f[0] != FILE_PIPE)
		return;
	if (nr_anons == CRFS_MAX_HANDED) {
		if (f[0] == FILE_PIPE)
			return;	/* not made here: an epoll watching it is refused */
		anon_fail(EOPNOTSUPP, "more than %d eventfd, timerfd, signalfd or epoll files",
			  CRFS_MAX_HANDED, 0);
	}
	a = &anons[nr_anons++];
	*a = (struct anon){ .objref = objref, .f_type = f[0], .pos = pos, .fd = -1,
			    .f_flags = f[2] };
	if (f[0] != FILE_PIPE || pread(fd, &a->pipe, sizeof(a->pipe), pos + FILE_HDR_LEN) !=
	    sizeof(a->pipe))
		return;
	if (pread(fd, next, sizeof(next), pos + len) == sizeof(next) && next[0] == HDR_PIPE_BUF)
		a->buf = pos + len;
	if (pread(fd, &a->pipe_flags, sizeof(a->pipe_flags), pos + FILE_HDR_LEN + 4) !=
	    sizeof(a->pipe_flags) ||
	    pread(fd, &a->size_log2, sizeof(a->size_log2), pos + FILE_HDR_LEN + 6) !=
	    sizeof(a->size_log2)) {
		a->pipe_flags = 0;
		a->size_log2 = 0;
	}
}

static void note_desc(int fd, off_t pos, int32_t table, int32_t mine)
{
	int32_t d[2];	/* fd_objref, fd_descriptor */
	struct anon *a;

	if (pread(fd, d, sizeof(d), pos + 8) != sizeof(d))
		return;
	a = anon_of(d[0]);
	if (!a)
		return;
	if (a->table != table) {
		a->table = table;
		a->tables++;
	}
	a->mine |= table == mine;
}

/* The anon files of the image, which of them our table names, their EPOLL_ITEMS. */
static void scan_anon(int fd, int32_t mine)
{
	int32_t last_file = 0, table = 0, obj[2], ep;
	uint32_t hdr[2];
	off_t pos = 0;
	struct anon *a;

	while (pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) && hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_OBJREF && pread(fd, obj, sizeof(obj), pos + 8) == sizeof(obj)) {
			if (obj[0] == OBJ_FILE)
				last_file = obj[1];
			else if (obj[0] == OBJ_FILE_TABLE)
				table = obj[1];
		} else if (hdr[0] == HDR_FILE) {
			note_file(fd, pos, hdr[1], last_file);
			last_file = 0;
		} else if (hdr[0] == HDR_FILE_DESC) {
			note_desc(fd, pos, table, mine);
		} else if (hdr[0] == HDR_EPOLL_ITEMS &&
			   pread(fd, &ep, sizeof(ep), pos + 8) == sizeof(ep)) {
			a = anon_of(ep);
			if (a && a->f_type == FILE_EPOLL && !a->items)
				a->items = pos;
		}
		pos += hdr[1];
	}
}

static void read_at(int fd, void *buf, size_t len, off_t pos)
{
	if (pread(fd, buf, len, pos) != (ssize_t)len)
		anon_fail(EINVAL, "a short anon file record at %d", (int)pos, 0);
}

static int make_eventfd(int fd, const struct anon *a, uint32_t f_flags)
{
	struct { uint64_t count; uint32_t flags; } h;
	int efd;

	read_at(fd, &h, sizeof(h), a->pos + FILE_HDR_LEN);
	efd = eventfd(0, EFD_CLOEXEC | (f_flags & O_NONBLOCK ? EFD_NONBLOCK : 0) |
		      (h.flags & EFD_SEMAPHORE));
	if (efd >= 0 && h.count && write(efd, &h.count, sizeof(h.count)) != sizeof(h.count))
		anon_fail(errno, "eventfd objref %d: count not set", a->objref, 0);
	return efd;
}

static void ns_timespec(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

static int make_timerfd(int fd, const struct anon *a, uint32_t f_flags)
{
	struct { int32_t clockid; uint32_t flags; uint64_t value, interval, ticks; } h;
	struct itimerspec its;
	struct timespec now;
	int tfd;

	read_at(fd, &h, sizeof(h), a->pos + FILE_HDR_LEN);
	tfd = timerfd_create(h.clockid, TFD_CLOEXEC | (f_flags & O_NONBLOCK ? TFD_NONBLOCK : 0));
	if (tfd < 0)
		return tfd;
	ns_timespec(h.value, &its.it_value);
	ns_timespec(h.interval, &its.it_interval);
	if (h.value && (h.flags & TFD_TIMER_ABSTIME)) {	/* the remaining time from now */
		if (clock_gettime(h.clockid, &now))
			return -1;
		ns_timespec(h.value + now.tv_nsec, &its.it_value);
		its.it_value.tv_sec += now.tv_sec;
	}
	if (timerfd_settime(tfd, h.flags, &its, NULL) ||
	    (h.ticks && ioctl(tfd, TFD_IOC_SET_TICKS, &h.ticks)))
		anon_fail(errno, "timerfd objref %d: its timer not set", a->objref, 0);
	return tfd;
}

static int make_signalfd(int fd, const struct anon *a, uint32_t f_flags)
{
	uint64_t mask;

	read_at(fd, &mask, sizeof(mask), a->pos + FILE_HDR_LEN);
	return syscall(SYS_signalfd4, -1, &mask, sizeof(mask),
		       SFD_CLOEXEC | (f_flags & O_NONBLOCK ? SFD_NONBLOCK : 0));
}

static void hand(struct anon *a)
{
	if (nr_handed == CRFS_MAX_HANDED)
		anon_fail(EOPNOTSUPP, "more than %d files to hand in", CRFS_MAX_HANDED, 0);
	handed[nr_handed++] = (struct crfs_handed_file){ .objref = a->objref, .fd = a->fd };
}

static void make_anon(int fd, struct anon *a)
{
	uint32_t f_flags = a->f_flags;

	if (a->f_type == FILE_EVENTFD)
		a->fd = make_eventfd(fd, a, f_flags);
	else if (a->f_type == FILE_TIMERFD)
		a->fd = make_timerfd(fd, a, f_flags);
	else if (a->f_type == FILE_SIGNALFD)
		a->fd = make_signalfd(fd, a, f_flags);
	else
		a->fd = epoll_create1(EPOLL_CLOEXEC);
	if (a->fd >= 0 && a->f_type == FILE_EPOLL && (f_flags & O_NONBLOCK))
		fcntl(a->fd, F_SETFL, O_NONBLOCK);
	if (a->fd < 0)
		anon_fail(errno, "objref %d (f_type %d): cannot make it", a->objref,
			  (int)a->f_type);
	hand(a);
}

/* The bytes of the pipe's PIPE_BUF written into it (@w: its write end). */
static void fill_pipe(int fd, const struct anon *a, int w)
{
	uint32_t h[2];
	char *buf;
	size_t len;

	read_at(fd, h, sizeof(h), a->buf);
	len = h[1] - sizeof(h);
	if (h[1] < sizeof(h) || len > MAX_PIPE_BUF)
		anon_fail(EINVAL, "pipe_objref %d: PIPE_BUF of %d bytes", a->pipe, (int)h[1]);
	if (!len)
		return;
	buf = malloc(len);
	if (!buf)
		anon_fail(ENOMEM, "pipe_objref %d: %d bytes", a->pipe, (int)len);
	read_at(fd, buf, len, a->buf + sizeof(h));
	fcntl(w, F_SETFL, O_NONBLOCK);
	if (write(w, buf, len) != (ssize_t)len)
		anon_fail(errno ? errno : ENOSPC, "pipe_objref %d: its %d bytes do not fit",
			  a->pipe, (int)len);
	fcntl(w, F_SETFL, 0);
	free(buf);
}

/* An end of pipe @p: the end itself the first time, else the pipe reopened. */
static int pipe_end(int p[2], int used[2], uint32_t f_flags)
{
	int acc = f_flags & O_ACCMODE, k = acc == O_WRONLY, e;
	char path[40];

	if (acc != O_RDWR && !used[k]) {
		used[k] = 1;
		e = p[k];
	} else {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
		e = open(path, acc | O_CLOEXEC);
	}
	if (e >= 0 && (f_flags & O_NONBLOCK))
		fcntl(e, F_SETFL, O_NONBLOCK);
	return e;
}

/*
 * Whether every end of the pipe of @t is in our table only, a missing end being one that
 * no process had open (PIPE_NO_*): 1, else 0 (-1: in another process's table too).
 */
static int pipe_here(const struct anon *t)
{
	int k, reader = t->pipe_flags & PIPE_NO_READER;
	int writer = t->pipe_flags & PIPE_NO_WRITER;

	for (k = 0; k < nr_anons; k++) {
		const struct anon *e = &anons[k];

		if (e->f_type != FILE_PIPE || e->pipe != t->pipe)
			continue;
		if (!e->mine || e->tables > 1)
			return -1;
		reader |= (e->f_flags & O_ACCMODE) != O_WRONLY;
		writer |= (e->f_flags & O_ACCMODE) != O_RDONLY;
	}
	return reader && writer;
}

/* A pipe of @t's capacity: F_SETPIPE_SZ for one above the default 64 KiB. */
static void size_pipe(const struct anon *t, int p[2])
{
	if (t->size_log2 <= PIPE_DEF_LOG2)
		return;
	if (t->size_log2 > 30 || fcntl(p[1], F_SETPIPE_SZ, 1 << t->size_log2) < 0)
		anon_fail(t->size_log2 > 30 ? EINVAL : errno,
			  "pipe_objref %d: F_SETPIPE_SZ of 2^%d bytes", t->pipe, t->size_log2);
}

/*
 * The pipe of end @t (an epoll watches it, or it is larger than 64 KiB): made, sized,
 * filled, and each of its ends handed in; its ends must be in our table and nowhere else.
 */
static void make_pipe(int fd, struct anon *t)
{
	int p[2], used[2] = { 0, 0 }, k, here = pipe_here(t);

	if (here < 0)
		anon_fail(EOPNOTSUPP, "pipe_objref %d, watched or large: in %d processes",
			  t->pipe, t->tables);
	if (!here)
		anon_fail(EOPNOTSUPP, "pipe_objref %d, watched by an epoll: an end not in the process",
			  t->pipe, 0);
	if (pipe2(p, O_CLOEXEC))
		anon_fail(errno, "pipe_objref %d: no pipe", t->pipe, 0);
	size_pipe(t, p);
	for (k = 0; k < nr_anons; k++)
		if (anons[k].f_type == FILE_PIPE && anons[k].pipe == t->pipe && anons[k].buf)
			fill_pipe(fd, &anons[k], p[1]);
	for (k = 0; k < nr_anons; k++) {
		struct anon *e = &anons[k];

		if (e->f_type != FILE_PIPE || e->pipe != t->pipe)
			continue;
		e->fd = pipe_end(p, used, e->f_flags);
		if (e->fd < 0)
			anon_fail(errno, "pipe_objref %d: an end not reopened", t->pipe, 0);
		hand(e);
	}
	for (k = 0; k < 2; k++)
		if (!used[k])
			close(p[k]);
}

/* The watch list of epoll @a: {num_items} then BUFFER{items}, in malloc()ed memory. */
static struct epoll_item *items_of(int fd, const struct anon *a, uint32_t *nr)
{
	uint32_t h[4];	/* ckpt_hdr, epfile_objref, num_items */
	uint32_t buf[2];
	struct epoll_item *items;

	*nr = 0;
	if (!a->items)
		return NULL;
	read_at(fd, h, sizeof(h), a->items);
	*nr = h[3];
	if (!*nr)
		return NULL;
	read_at(fd, buf, sizeof(buf), a->items + h[1]);
	if (*nr > MAX_ITEMS || buf[0] != HDR_BUFFER || buf[1] != 8 + *nr * sizeof(*items))
		anon_fail(EINVAL, "epoll objref %d: %d watches not in a BUFFER", a->objref,
			  (int)*nr);
	items = malloc(*nr * sizeof(*items));
	if (!items)
		anon_fail(ENOMEM, "epoll objref %d: %d watches", a->objref, (int)*nr);
	read_at(fd, items, *nr * sizeof(*items), a->items + h[1] + 8);
	return items;
}

/* The target of each watch: one of our anon files, in our table only. */
static int check_items(int fd, const struct anon *ep, const struct epoll_item *items,
		       uint32_t nr)
{
	struct anon *t;
	int top = 0;
	uint32_t i;

	if (ep->tables > 1)
		anon_fail(EOPNOTSUPP, "epoll objref %d: shared by %d processes", ep->objref,
			  ep->tables);
	for (i = 0; i < nr; i++) {
		t = anon_of(items[i].file_objref);
		if (t && t->mine && t->f_type == FILE_PIPE && t->fd < 0)
			make_pipe(fd, t);
		if (!t || !t->mine || t->fd < 0)
			anon_fail(EOPNOTSUPP, "epoll watch of fd %d: not an eventfd, timerfd, signalfd or epoll (objref %d)",
				  (int)items[i].fd, items[i].file_objref);
		if (t->tables > 1)
			anon_fail(EOPNOTSUPP, "epoll watch of fd %d: shared by %d processes",
				  (int)items[i].fd, t->tables);
		if (items[i].fd > (1U << 20))
			anon_fail(EINVAL, "epoll watch of fd %d (objref %d)", (int)items[i].fd,
				  ep->objref);
		if ((int)items[i].fd >= top)
			top = items[i].fd + 1;
	}
	return top;
}

struct watching {
	const struct anon *ep;
	const struct epoll_item *items;
	uint32_t nr;
	int top;
	int moved[CRFS_MAX_HANDED];	/* the child's fd of each anons[] */
};

/* An fd of the child above every watch's fd number. */
static int moved_fd(struct watching *w, int k)
{
	if (w->moved[k] < 0 && anons[k].fd >= 0)
		w->moved[k] = anons[k].fd < w->top ?
			      fcntl(anons[k].fd, F_DUPFD_CLOEXEC, w->top) : anons[k].fd;
	return w->moved[k];
}

/*
 * The watches of w->ep, added in a child with its own copy of our fd table (and our
 * memory and signal handlers: a signalfd's watch waits on the sighand of the task that
 * added it): each target put at the fd number it was added as (the epoll keys its
 * watches by file and fd), our files moved above them first. The epolls and targets are
 * the same open files as ours.
 */
static int add_watches(void *arg)
{
	struct watching *w = arg;
	struct epoll_event ev;
	int k, ep, t;
	uint32_t i;

	for (k = 0; k < nr_anons; k++)
		w->moved[k] = -1;
	ep = moved_fd(w, w->ep - anons);
	for (i = 0; i < w->nr; i++) {
		t = moved_fd(w, anon_of(w->items[i].file_objref) - anons);
		ev.events = w->items[i].events;
		ev.data.u64 = w->items[i].data;
		if (t < 0 || ep < 0 || dup2(t, w->items[i].fd) < 0 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, w->items[i].fd, &ev))
			return errno;
		close(w->items[i].fd);
	}
	return 0;
}

static void watch_all(int fd)
{
	static struct watching w;
	struct epoll_item *items;
	int k, top, status;
	uint32_t nr;
	pid_t pid;
	char *stack;

	for (k = 0; k < nr_anons; k++) {
		if (!anons[k].mine || anons[k].f_type != FILE_EPOLL)
			continue;
		items = items_of(fd, &anons[k], &nr);
		top = check_items(fd, &anons[k], items, nr);
		if (!nr)
			continue;
		w = (struct watching){ .ep = &anons[k], .items = items, .nr = nr, .top = top };
		stack = mmap(NULL, THREAD_STACK, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		pid = stack == MAP_FAILED ? -1 :
		      clone(add_watches, stack + THREAD_STACK, CLONE_VM | CLONE_SIGHAND | SIGCHLD,
			    &w);
		if (pid < 0)
			anon_fail(errno, "epoll objref %d: no child to add its watches",
				  anons[k].objref, 0);
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			anon_fail(WIFEXITED(status) ? WEXITSTATUS(status) : EIO,
				  "epoll objref %d: its watches not added", anons[k].objref, 0);
		free(items);
		munmap(stack, THREAD_STACK);
	}
}

/* Our task's anon files made, into handed[]; nothing when it has none. */
static void make_anon_files(int fd)
{
	int32_t mine = no_anon ? 0 : files_of(fd, task_index);
	int k;

	if (!mine)
		return;
	scan_anon(fd, mine);
	for (k = 0; k < nr_anons; k++)
		if (anons[k].mine && anons[k].f_type != FILE_PIPE)
			make_anon(fd, &anons[k]);
	watch_all(fd);
	for (k = 0; k < nr_anons; k++)	/* larger than 64 KiB: the module cannot size it */
		if (anons[k].mine && anons[k].f_type == FILE_PIPE && anons[k].fd < 0 &&
		    anons[k].size_log2 > PIPE_DEF_LOG2 && pipe_here(&anons[k]) > 0)
			make_pipe(fd, &anons[k]);
}

#include "crfs-restart-unix.h"
#include "crfs-restart-timers.h"

struct restart {
	int dev;
	int with_files;		/* RESTART_FILES with handed[] */
	struct crfs_image_args args;
};

/* RESTART of one task; only a failure returns. */
static void restart(struct restart *r)
{
	struct crfs_restart_args files = {
		.image = r->args,
		.handed = (uintptr_t)handed,
		.nr_handed = nr_handed,
	};
	long ret;

	if (r->with_files) {
		ret = raw_ioctl(r->dev, CRFS_IOC_RESTART_FILES, &files);
		r->args = files.image;
	} else {
		ret = raw_ioctl(r->dev, CRFS_IOC_RESTART, &r->args);
	}

	fail_task(r->args.task_index, "restart", ret < 0 ? -ret : EIO, r->args.err_msg,
		  r->args.err_offset, r->args.err_type);
}

static void restart_raw(void *r)
{
	restart(r);
}

static void *restart_thread(void *r)
{
	__atomic_store_n(&thread_tid[((struct restart *)r)->args.task_index],
			 (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	restart(r);
	return NULL;
}

/*
 * One thread per other task of this process, each restoring its own: with its image tid
 * when the kernel lets us, else a pthread.
 */
static void start_threads(int dev, int fd)
{
	static struct restart threads[MAX_TASKS];
	pthread_t t;
	void *stack;
	long tid;
	int k, err;

	for (k = 0; k < nr_tasks; k++) {
		if (leader_of[k] != (int)task_index || k == (int)task_index)
			continue;
		threads[k].dev = dev;
		threads[k].args.fd = fd;
		threads[k].args.flags = restart_flags;
		threads[k].args.task_index = k;
		tid = -EPERM;
		if (image_pids) {
			stack = mmap(NULL, THREAD_STACK, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (stack == MAP_FAILED)
				fail("threads", errno, "no stack for a thread", UINT64_MAX, 0);
			tid = thread_as(&pids[k].vpid, stack, THREAD_STACK, restart_raw,
					&threads[k]);
			if (tid < 0)
				munmap(stack, THREAD_STACK);
			if (tid < 0 && !pid_refused(tid))
				fail("threads", -tid, "cannot start a thread", UINT64_MAX, 0);
		}
		if (tid >= 0) {
			__atomic_store_n(&thread_tid[k], (pid_t)tid, __ATOMIC_RELEASE);
			continue;
		}
		err = pthread_create(&t, NULL, restart_thread, &threads[k]);
		if (err)
			fail("threads", err, "cannot start a thread", UINT64_MAX, 0);
	}
}

/* The options, into the globals and @device: the index of IMAGE in @argv, -1 for usage. */
static int parse_args(int argc, char **argv, const char **device)
{
	int opt;

	static const struct option longs[] = {
		{ "lazy", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "d:r:NSRATLi:", longs, NULL)) != -1) {
		if (opt == 'L')
			lazy = 1;
		else if (opt == 'd')
			*device = optarg;
		else if (opt == 'r')
			report_fd = atoi(optarg);
		else if (opt == 'N')
			image_pids = 0;
		else if (opt == 'S')
			restart_flags &= ~CRFS_RESTART_INHERIT;
		else if (opt == 'R')
			restart_flags |= CRFS_RESTART_REPLACE;
		else if (opt == 'A')
			no_anon = 1;
		else if (opt == 'T')
			no_timers = 1;
		else if (opt != 'i' || nr_inherit == MAX_INHERIT ||
			 sscanf(optarg, "%d=%d", &inherit_image[nr_inherit],
				&inherit_from[nr_inherit]) != 2 ||
			 inherit_image[nr_inherit] < 0 || inherit_from[nr_inherit] < 0)
			return -1;
		else
			nr_inherit++;
	}
	return optind == argc - 1 ? optind : -1;
}

/* Our own fd moved above every IMAGEFD of -i (close-on-exec, as all of ours are). */
static int out_of_the_way(int ourfd)
{
	int k, low = 3, moved;

	for (k = 0; k < nr_inherit; k++)
		if (inherit_image[k] >= low)
			low = inherit_image[k] + 1;
	if (ourfd < 0 || ourfd >= low)
		return ourfd;
	moved = fcntl(ourfd, F_DUPFD_CLOEXEC, low);
	if (moved < 0)
		fail("inherit", errno, "cannot move an fd", UINT64_MAX, 0);
	close(ourfd);
	return moved;
}

/*
 * What is handed in to the kernel: fds 0-2 and each IMAGEFD of -i (FD's file), the
 * only fds without close-on-exec. Swaps (-i 3=4 -i 4=3) go through copies.
 */
static void hand_in(int *dev, int *fd)
{
	int k, copy[MAX_INHERIT];

	*dev = out_of_the_way(*dev);
	*fd = out_of_the_way(*fd);
	report_fd = out_of_the_way(report_fd);
	for (k = 0; k < nr_inherit; k++) {
		copy[k] = fcntl(inherit_from[k], F_DUPFD_CLOEXEC, 3);
		if (copy[k] < 0)
			fail("inherit", errno, "-i: not an open fd", UINT64_MAX, 0);
	}
	for (k = 0; k < nr_inherit; k++) {
		if (dup2(copy[k], inherit_image[k]) < 0)
			fail("inherit", errno, "-i: cannot place the fd", UINT64_MAX, 0);
		close(copy[k]);
	}
}

/* Address-space randomization off, by re-executing this program once (step 1). */
static void no_randomization(char **argv)
{
	int persona = personality(0xffffffff);

	if (persona != -1 && !(persona & ADDR_NO_RANDOMIZE) &&
	    personality(persona | ADDR_NO_RANDOMIZE) != -1) {
		execv("/proc/self/exe", argv);
		/* no re-exec: go on with this layout */
	}
}

/* The crfs device, of our ABI version. */
static int open_device(const char *device)
{
	int dev, version;

	dev = open(device, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		fail("open-device", errno, device, UINT64_MAX, 0);
	version = ioctl(dev, CRFS_IOC_VERSION);
	if (version < 0)
		fail("version", errno, "not the crfs device", UINT64_MAX, 0);
	if (version != CRFS_ABI_VERSION)
		fail("version", EPROTO, "another module ABI version", UINT64_MAX, 0);
	return dev;
}

/*
 * The image's tree forked (when it has several processes), our vdso moved, then RESTART
 * of our task and of our process's other threads; only a failure returns.
 */
static void restart_image(int dev, int fd)
{
	struct restart self;
	int ready[2] = { -1, -1 }, go[2] = { -1, -1 };

	read_tree(fd);
	lazy_test_limits();
	if (lazy && lazy_expected() > lazy_max_procs) {
		nr_procs = 1;	/* nothing forked yet: kill nothing */
		fail("lazy", E2BIG, "more processes than --lazy serves", UINT64_MAX, 0);
	}
	if (nr_procs > 1) {
		/*
		 * far below where the kernel puts mmaps and vdsos: no clash with the image's;
		 * before the root's fork, so that a lazy server shares it
		 */
		real_pid = mmap(TABLE_HINT, MAX_TASKS * sizeof(*real_pid), PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (real_pid == MAP_FAILED) {
			real_pid = NULL;
			fail("tree", errno, "mmap", UINT64_MAX, 0);
		}
		real_pid[0] = getpid();
	}
	root_with_image_pid(dev, fd);
	outer_pgid = getpgrp();
	enter_session();
	if (nr_procs > 1) {
		if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC))
			fail("tree", errno, "pipe", UINT64_MAX, 0);
	}
	make_unix_sockets(fd);	/* by the root, for all: crfs-restart-unix.h */
	if (nr_procs > 1)
		fork_tree(ready, go);
	if (lazy_sock >= 0) {	/* each process its own: a userfaultfd is bound to its mm */
		lazy_send_uffd(lazy_sock);
		close(lazy_sock);
		lazy_sock = -1;
	}
	make_anon_files(fd);
	hand_unix_sockets();
	place_vdso(image_vdso(fd, task_index));
	memset(&self, 0, sizeof(self));
	self.dev = dev;
	self.with_files = nr_handed > 0;
	self.args.fd = fd;
	self.args.flags = restart_flags;
	self.args.task_index = task_index;
	if (nr_procs > 1)
		barrier(ready, go);
	join_group();
	read_posix_timers(fd);
	read_itimers(fd);
	start_threads(dev, fd);
	make_posix_timers();
	arm_itimers();
	restart(&self);
}

int main(int argc, char **argv)
{
	const char *device = "/dev/crfs";
	int image, dev, fd;

	image = parse_args(argc, argv, &device);
	if (image < 0)
		goto usage;
	no_randomization(argv);
	/* nothing above stderr is handed in but what -i says */
	syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
	dev = open_device(device);
	fd = open(argv[image], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("open-image", errno, argv[image], UINT64_MAX, 0);
	hand_in(&dev, &fd);
	restart_image(dev, fd);
usage:
	fprintf(stderr,
		"usage: crfs-restart [-d DEVICE] [-r FD] [-N] [-S] [-R] [-A] [-T] [-L|--lazy]\n"
		"                    [-i IMAGEFD=FD]... IMAGE\n");
	return 2;
}
