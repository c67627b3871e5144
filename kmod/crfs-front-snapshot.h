/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs-front's snapshot checkpoints (CRFS_IOC_SNAPSHOT): the processes are stopped only
 * while crfs.ko writes what the stopped processes alone can tell; their private memory is
 * then written from copy-on-write clones as they run on.
 *
 * Each process gets its clone as crfs/checkpoint/snapshot.py makes it: one injected
 * clone(CLONE_FS | CLONE_FILES | CLONE_SYSVSEM, exit signal 0) in one of its threads,
 * single-stepped over a syscall instruction of its [vdso], with PTRACE_O_TRACECLONE set so
 * that the clone is ours from its creation and never runs. It shares the file table (no
 * descriptor is duplicated) and gives its parent no SIGCHLD. Once the module says the
 * processes may run on, each clone is killed and waited for (the module holds its memory),
 * and its parent, still stopped, reaps it with one injected waitid(): no zombie, signal
 * or descriptor is left. Registers, the rseq_cs word and signals taken by a step are put
 * back as crfs/checkpoint/inject.py does; a thread holding a signal, or 32-bit, is not
 * stepped. A process no thread of which can make its clone is written while stopped.
 *
 * Included by crfs-front.c after the freezer.
 */
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/user.h>

#define SYS_CLONE_NR	56
#define SYS_WAITID_NR	247
#define CLONE_SNAPSHOT	(CLONE_FS | CLONE_FILES | CLONE_SYSVSEM)	/* exit signal 0 */
#define P_PID_WAIT	1
#define USER_CS_64	0x33
#define RSEQ_CS_OFFSET	8		/* struct rseq: u32 cpu_id_start, cpu_id; u64 rseq_cs */
#define MAX_STEPS	3		/* inject.MAX_STEPS */
#define STEP_TIMEOUT_MS	5000		/* inject.STEP_TIMEOUT */
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

struct rseq_config {			/* struct ptrace_rseq_configuration */
	unsigned long long rseq_abi_pointer;
	unsigned int rseq_abi_size, signature, flags, pad;
};

static struct crfs_clone clones[MAX_TASKS];	/* the processes' clones */
static unsigned long clone_insns[MAX_TASKS];	/* syscall_insn() of clones[i].pid */
static int nr_clones;

/* The address of a syscall instruction (0f 05) in the [vdso] of `pid`, or 0. */
static unsigned long syscall_insn(pid_t pid)
{
	char path[64], line[512];
	unsigned long start = 0, end = 0, at = 0;
	unsigned char *code;
	FILE *maps;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	maps = fopen(path, "re");
	if (!maps)
		return 0;
	while (fgets(line, sizeof(line), maps))
		if (strstr(line, "[vdso]") && sscanf(line, "%lx-%lx", &start, &end) == 2)
			break;
	fclose(maps);
	if (!start || end <= start || end - start > (1 << 20))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	code = malloc(end - start);
	if (fd >= 0 && code && pread(fd, code, end - start, start) == (ssize_t)(end - start)) {
		unsigned char *insn = memmem(code, end - start, "\x0f\x05", 2);

		if (insn)
			at = start + (insn - code);
	}
	free(code);
	if (fd >= 0)
		close(fd);
	return at;
}

/* The waitpid status of the stop that ends a step; *late when it had to be interrupted. */
static int wait_step(pid_t tid, int *status, int *late)
{
	int polls;

	*late = 0;
	for (polls = 0; polls < STEP_TIMEOUT_MS; polls++) {
		pid_t got = waitpid(tid, status, __WALL | WNOHANG);

		if (got == tid)
			return 0;
		if (got < 0)
			return -1;
		usleep(polls < 10 ? 0 : 1000);
	}
	*late = 1;		/* frozen by a cgroup, say: stop it to put its registers back */
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL))
		return -1;
	return waitpid(tid, status, __WALL) == tid ? 0 : -1;
}

/*
 * Step `t` over the syscall instruction at `insn`: 1 with its registers after it, 0 when
 * the syscall did not run (a signal came first: kept in t->sig for the detach), -1 when
 * the thread is gone.
 */
static int step_over(struct task *t, unsigned long insn, struct user_regs_struct *after)
{
	int i, status, late;

	for (i = 0; i < MAX_STEPS; i++) {
		if (ptrace(PTRACE_SINGLESTEP, t->tid, NULL, NULL) ||
		    wait_step(t->tid, &status, &late) || !WIFSTOPPED(status))
			return -1;
		if (ptrace(PTRACE_GETREGS, t->tid, NULL, after))
			return -1;
		if (status >> 16) {	/* an event stop: our clone's, or our interrupt */
			if (late && after->rip == insn)
				return 0;
			continue;	/* step on, to the trap after the syscall */
		}
		if (WSTOPSIG(status) == SIGTRAP && after->rip == insn + 2)
			return 1;
		t->sig = WSTOPSIG(status);	/* dequeued before the syscall ran */
		return 0;
	}
	return 0;
}

/*
 * Syscall `nr` with `args` (rdi, rsi, rdx, r10, r8) run by the stopped thread `t`: 1 with
 * its result in *result, 0 when it could not be run safely, -1 when the thread is gone.
 * Its registers and rseq_cs word are left as they were.
 */
static int inject(struct task *t, unsigned long insn, long nr, const unsigned long args[5],
		  long *result)
{
	struct user_regs_struct regs, call, after;
	struct rseq_config rseq = { 0 };
	unsigned long cs_at = 0;
	long cs = 0;
	int ret;

	if (t->sig || !insn || ptrace(PTRACE_GETREGS, t->tid, NULL, &regs))
		return 0;
	if (regs.cs != USER_CS_64)
		return 0;
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->tid, (void *)sizeof(rseq), &rseq) > 0 &&
	    rseq.rseq_abi_pointer) {
		cs_at = rseq.rseq_abi_pointer + RSEQ_CS_OFFSET;
		errno = 0;
		cs = ptrace(PTRACE_PEEKDATA, t->tid, (void *)cs_at, NULL);
		if (errno)
			return 0;
	}
	call = regs;
	call.rip = insn;
	call.rax = nr;
	call.orig_rax = -1;	/* no syscall restart of these registers */
	call.rdi = args[0];
	call.rsi = args[1];
	call.rdx = args[2];
	call.r10 = args[3];
	call.r8 = args[4];
	if (ptrace(PTRACE_SETREGS, t->tid, NULL, &call))
		return 0;
	ret = step_over(t, insn, &after);
	if (ret == 1)
		*result = (long)after.rax;
	if (ret >= 0 && cs_at) {
		errno = 0;
		if (ptrace(PTRACE_PEEKDATA, t->tid, (void *)cs_at, NULL) != cs || errno)
			ptrace(PTRACE_POKEDATA, t->tid, (void *)cs_at, (void *)cs);
	}
	if (ret >= 0 && ptrace(PTRACE_SETREGS, t->tid, NULL, &regs))
		return -1;
	return ret;
}

/*
 * A stopped copy-on-write clone of process `pid`, made by one of its threads stepped over
 * `insn`; 0 if none, -pid of one that is not usable (to be ended).
 */
static pid_t make_clone(pid_t pid, unsigned long insn)
{
	const unsigned long args[5] = { CLONE_SNAPSHOT };
	long child;
	int i, ret, status;

	for (i = 0; insn && i < nr_tasks; i++) {
		if (tasks[i].tgid != pid)
			continue;
		/* keeping PTRACE_O_SUSPEND_SECCOMP: strict mode would kill it for clone() */
		if (ptrace(PTRACE_SETOPTIONS, tasks[i].tid, NULL,
			   (void *)(tasks[i].options | PTRACE_O_TRACECLONE)))
			continue;
		ret = inject(&tasks[i], insn, SYS_CLONE_NR, args, &child);
		ptrace(PTRACE_SETOPTIONS, tasks[i].tid, NULL, (void *)tasks[i].options);
		if (ret < 0)
			return 0;
		if (ret == 0)
			continue;	/* try another thread */
		if (child <= 0)
			return 0;
		if (wait_status(child, &status) || !WIFSTOPPED(status)) {
			kill(child, SIGKILL);	/* not ours to use: end it (reaped below) */
			return -child;
		}
		return child;		/* at its first stop: it has run nothing */
	}
	return 0;
}

/* Have process `pid`, stopped, reap its exited clone `clone` (injected waitid). */
static void reap_in(pid_t pid, pid_t clone, unsigned long insn)
{
	const unsigned long args[5] = { P_PID_WAIT, clone, 0, WEXITED | __WALL };
	long result;
	int i;

	for (i = 0; insn && i < nr_tasks; i++)
		if (tasks[i].tgid == pid && inject(&tasks[i], insn, SYS_WAITID_NR, args,
						    &result) == 1 &&
		    (result == 0 || result == -ECHILD))
			return;
}

/* Kill the clone, wait for it as its tracer, have its parent reap it. */
static void end_clone(pid_t pid, pid_t clone, unsigned long insn)
{
	kill(clone, SIGKILL);
	wait_exit(clone);
	reap_in(pid, clone, insn);
}

/* A clone of every stopped process that can make one; how many. */
static int make_clones(void)
{
	unsigned long insn;
	pid_t clone;
	int p;

	for (p = 0; p < nr_procs; p++) {
		insn = syscall_insn(procs[p]);	/* read once: the reaping steps over it too */
		clone = make_clone(procs[p], insn);
		if (clone < 0) {
			end_clone(procs[p], -clone, insn);
		} else if (clone) {
			clone_insns[nr_clones] = insn;
			clones[nr_clones++] = (struct crfs_clone){ procs[p], clone };
		}
	}
	return nr_clones;
}

static void end_clones(void)
{
	while (nr_clones) {
		nr_clones--;
		end_clone(clones[nr_clones].pid, clones[nr_clones].clone, clone_insns[nr_clones]);
	}
}
