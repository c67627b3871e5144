// SPDX-License-Identifier: GPL-2.0
/*
 * crfs-front: root's `crfs` command, in front of the Python CLI.
 *
 *   crfs checkpoint PID [-o FILE | --store DIR] [--tree] [--leave-stopped | --kill]
 *                       [--format ckpt] [--via auto|kernel] [--stop] [-q]
 *
 * kmod/install puts it at /usr/local/sbin/crfs, which root's PATH (and sudo's) searches
 * before /usr/local/bin, where pip puts the Python `crfs`. Only root opens /dev/crfs, so
 * only root can take the kernel's path of `crfs checkpoint`: freeze with ptrace, have
 * crfs.ko write the image (CRFS_IOC_SNAPSHOT from copy-on-write clones, the processes
 * running on once what only they can tell is written: crfs-front-snapshot.h; with --stop
 * or --kill, CRFS_IOC_CHECKPOINT), place it, let the processes go, and on a terminal show
 * the CLI's progress and summary line. That is all this program does
 * itself, the same way crfs/checkpoint (via_kernel.py, freezer.py, api.py) does it,
 * without the interpreter's start-up, most of the command's time in a slow machine
 * (issue #13).
 *
 * Everything else is handed to the Python CLI with the same argv (execv): another
 * command, an option this program does not parse exactly (abbreviations, --help,
 * --parent ...), a store directory that does not exist yet, no /dev/crfs, and any failure
 * before the image is in place. In that last case the processes are let go first, as
 * they were, and the temporary file removed: the CLI then does the whole checkpoint again
 * and reports in its own words, or uses its userspace writer where "auto" allows it. The
 * one failure reported here is a task that does not stop within STOP_TIMEOUT seconds,
 * which the CLI would wait for again.
 *
 * The Python CLI is the first `crfs` on PATH, after this one, that is a script ("#!"):
 * never an ELF file, so a copy of this program is never run in its place.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "crfs_ioctl.h"

#define DEVICE		"/dev/crfs"
#define DEFAULT_STORE	"/var/lib/crfs"		/* crfs.store_paths.DEFAULT_STORE */
#define MAX_TASKS	1024			/* CRFS_MAX_TASKS: more, the module refuses */
#define MAX_THREAD_SCANS 100			/* freezer.MAX_THREAD_SCANS */
#define MAX_NAME_TRIES	100			/* api.MAX_NAME_TRIES */
#define STOP_TIMEOUT	10			/* ptrace.STOP_TIMEOUT, seconds */
#define REAP_WAIT	10			/* freezer.REAP_WAIT, seconds */
#define SPIN_WAITS	2000			/* ptrace.SPIN_WAITS */
#define SECCOMP_STRICT	1
#ifndef PTRACE_O_SUSPEND_SECCOMP
#define PTRACE_O_SUSPEND_SECCOMP (1 << 21)
#endif

struct options {
	pid_t pid;
	const char *output;		/* -o FILE, or NULL: into the store */
	const char *store;
	int tree, stop_after, kill_after, quiet;
	int stop;			/* --stop: stopped for the whole write, no snapshot */
};

struct task {
	pid_t tgid, tid;
	int sig;			/* taken by a signal-delivery stop: passed on at detach */
	long options;			/* of its PTRACE_SEIZE */
};

static char **cli_argv;			/* our own argv, handed on unchanged */
static _Atomic int interrupted;		/* SIGINT, SIGTERM or SIGHUP came (lock-free) */
static struct task tasks[MAX_TASKS];	/* every thread stopped, in the order stopped */
static int nr_tasks;
static pid_t procs[MAX_TASKS];		/* the processes stopped, parents first */
static int nr_procs;
static struct timespec started;		/* when this program started */

/* ---------------------------------------------------------------- the Python CLI */

static int same_file(const char *a, const struct stat *b)
{
	struct stat st;

	return stat(a, &st) == 0 && st.st_dev == b->st_dev && st.st_ino == b->st_ino;
}

static int is_script(const char *path)
{
	char magic[2];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	int script = fd >= 0 && !fstat(fd, &st) && S_ISREG(st.st_mode) &&
		     read(fd, magic, 2) == 2 && magic[0] == '#' && magic[1] == '!';

	if (fd >= 0)
		close(fd);
	return script;
}

/*
 * Run the Python CLI with our argv; if there is none, exit 2. Empty PATH entries (the
 * working directory) are not searched.
 */
static _Noreturn void delegate(void)
{
	const char *path = getenv("PATH");
	char *dirs, *dir, *save = NULL, cand[PATH_MAX];
	struct stat self;

	if (stat("/proc/self/exe", &self) != 0)
		memset(&self, 0, sizeof(self));
	dirs = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (dir = dirs ? strtok_r(dirs, ":", &save) : NULL; dir;
	     dir = strtok_r(NULL, ":", &save)) {
		if (snprintf(cand, sizeof(cand), "%s/crfs", dir) >= (int)sizeof(cand))
			continue;
		if (same_file(cand, &self) || access(cand, X_OK) != 0 || !is_script(cand))
			continue;
		execv(cand, cli_argv);
	}
	fprintf(stderr, "crfs: no Python crfs on PATH to run this command (pip install crfs)\n");
	exit(2);
}

/* ---------------------------------------------------------------- arguments */

static int parse_pid(const char *text, pid_t *pid)
{
	char *end;
	long value;

	if (!isdigit((unsigned char)*text))
		return -1;
	errno = 0;
	value = strtol(text, &end, 10);
	if (*end || errno || value <= 0 || value > INT_MAX)
		return -1;
	*pid = value;
	return 0;
}

/* The value of option `name` at argv[*i] ("--name V", "--name=V", "-oV"), or NULL. */
static const char *value_of(char **argv, int argc, int *i, const char *name)
{
	size_t len = strlen(name);
	const char *arg = argv[*i];

	if (strncmp(arg, name, len) != 0)
		return NULL;
	if (arg[len] == '=' && name[1] == '-')
		return arg + len + 1;
	if (arg[len] && name[1] != '-')
		return arg + len;		/* -oFILE */
	if (arg[len] || *i + 1 >= argc || argv[*i + 1][0] == '-')
		return NULL;
	return argv[++*i];
}

static int set_once(const char **slot, const char *value)
{
	if (!value || *slot || !*value)
		return -1;
	*slot = value;
	return 0;
}

static int flag_once(int *slot)
{
	if (*slot)
		return -1;
	*slot = 1;
	return 0;
}

static int parse_option(char **argv, int argc, int *i, struct options *o,
			const char **fmt, const char **via)
{
	const char *arg = argv[*i];

	if (!strcmp(arg, "--tree"))
		return flag_once(&o->tree);
	if (!strcmp(arg, "--leave-stopped"))
		return flag_once(&o->stop_after);
	if (!strcmp(arg, "--kill"))
		return flag_once(&o->kill_after);
	if (!strcmp(arg, "-q") || !strcmp(arg, "--quiet")) {
		o->quiet = 1;
		return 0;
	}
	if (!strcmp(arg, "--stop"))
		return flag_once(&o->stop);
	if (!strncmp(arg, "-o", 2) && strncmp(arg, "--", 2))
		return set_once(&o->output, value_of(argv, argc, i, "-o"));
	if (!strncmp(arg, "--output", 8))
		return set_once(&o->output, value_of(argv, argc, i, "--output"));
	if (!strncmp(arg, "--store", 7))
		return set_once(&o->store, value_of(argv, argc, i, "--store"));
	if (!strncmp(arg, "--format", 8))
		return set_once(fmt, value_of(argv, argc, i, "--format"));
	if (!strncmp(arg, "--via", 5))
		return set_once(via, value_of(argv, argc, i, "--via"));
	return -1;
}

/*
 * 0 when argv is `crfs checkpoint ...` with only what the kernel's path takes, each
 * option at most once and spelled in full; -1 for anything else.
 */
static int parse(int argc, char **argv, struct options *o)
{
	const char *fmt = NULL, *via = NULL;
	int i, have_pid = 0;

	memset(o, 0, sizeof(*o));
	if (argc < 3 || strcmp(argv[1], "checkpoint"))
		return -1;
	for (i = 2; i < argc; i++) {
		if (argv[i][0] != '-') {
			if (have_pid++ || parse_pid(argv[i], &o->pid))
				return -1;
		} else if (parse_option(argv, argc, &i, o, &fmt, &via)) {
			return -1;
		}
	}
	if (!have_pid || (o->output && o->store) || (o->stop_after && o->kill_after))
		return -1;
	if (fmt && strcmp(fmt, "ckpt"))
		return -1;
	if (via && strcmp(via, "auto") && strcmp(via, "kernel"))
		return -1;
	if (!o->output && !o->store)
		o->store = DEFAULT_STORE;
	return 0;
}

/* ---------------------------------------------------------------- /proc */

static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* /proc/ENTRY/stat: the state letter and the fields after it, from field 4 on. */
static int read_stat(const char *entry, char *state, long long *fields, int count)
{
	char path[64], buf[1024], *p;
	int i;

	snprintf(path, sizeof(path), "/proc/%s/stat", entry);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');		/* comm may hold spaces and parentheses */
	if (!p || p[1] != ' ' || !p[2])
		return -1;
	*state = p[2];
	p += 3;
	for (i = 0; i < count; i++) {
		char *end;

		fields[i] = strtoll(p, &end, 10);
		if (end == p)
			return -1;
		p = end;
	}
	return 0;
}

/* /proc/<pid>/stat's ppid (field 4) and start time (field 22); -1 when gone. */
static int stat_of(pid_t pid, char *state, long long *ppid, long long *start)
{
	long long f[19];
	char entry[16];

	snprintf(entry, sizeof(entry), "%d", pid);
	if (read_stat(entry, state, f, 19))
		return -1;
	*ppid = f[0];
	*start = f[18];
	return 0;
}

static char task_state(pid_t pid, pid_t tid)
{
	char entry[48], state;
	long long ppid;

	snprintf(entry, sizeof(entry), "%d/task/%d", pid, tid);
	return read_stat(entry, &state, &ppid, 1) ? 'X' : state;
}

/* A number after "KEY:\t" in a /proc status file; `missing` when there is none. */
static long status_field(const char *path, const char *key, long missing)
{
	char buf[4096], *p;
	size_t len = strlen(key);

	if (read_small(path, buf, sizeof(buf)) < 0)
		return missing;
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, len) && p[len] == ':')
			return strtol(p + len + 1, NULL, 10);
	return missing;
}

/* Whether `pid` is a process (a thread group leader), as the CLI checks first. */
static int is_process(pid_t pid)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return status_field(path, "Tgid", -1) == pid;
}

static int cmp_pid(const void *a, const void *b)
{
	return *(const pid_t *)a - *(const pid_t *)b;
}

/* The numeric entries of DIR, ascending, at most `max`; -1 if it cannot be read. */
static int numbers_in(const char *dir, pid_t *out, int max)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) && n < max)
		if (isdigit((unsigned char)e->d_name[0]))
			out[n++] = atoi(e->d_name);
	closedir(d);
	qsort(out, n, sizeof(*out), cmp_pid);
	return n;
}

/* ---------------------------------------------------------------- the freeze */

static pid_t seen[MAX_TASKS];		/* threads we tried to stop (freezer.states) */
static int nr_seen;
static pid_t timed_out;			/* the thread that did not stop in time */

static int listed(const pid_t *list, int n, pid_t pid)
{
	int i;

	for (i = 0; i < n; i++)
		if (list[i] == pid)
			return 1;
	return 0;
}

static int wait_status(pid_t tid, int *status)
{
	struct timespec ms = { 0, 1000000 };
	int polls;

	for (polls = 0; polls < SPIN_WAITS + STOP_TIMEOUT * 1000; polls++) {
		pid_t got = waitpid(tid, status, __WALL | WNOHANG);

		if (got == tid)
			return 0;
		if (got < 0)
			return -1;
		if (polls < SPIN_WAITS)
			sched_yield();
		else
			nanosleep(&ms, NULL);
	}
	timed_out = tid;
	errno = ETIMEDOUT;
	return -1;
}

/* Seize and interrupt one thread: 1 stopped, 0 a thread that just exited, -1 failed. */
static int stop_thread(pid_t pid, pid_t tid)
{
	char path[64];
	char state = task_state(pid, tid);
	long options = 0;
	int status;

	if (nr_seen == MAX_TASKS || nr_tasks == MAX_TASKS)
		return -1;
	seen[nr_seen++] = tid;
	if (state == 'Z' || state == 'X')
		return tid == pid ? -1 : 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	if (status_field(path, "Seccomp", 0) == SECCOMP_STRICT)
		options = PTRACE_O_SUSPEND_SECCOMP;
	if (ptrace(PTRACE_SEIZE, tid, NULL, (void *)options))
		return errno == ESRCH && tid != pid ? 0 : -1;
	tasks[nr_tasks++] = (struct task){ .tgid = pid, .tid = tid, .options = options };
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) || wait_status(tid, &status))
		return errno == ESRCH && tid != pid ? 0 : -1;
	if (!WIFSTOPPED(status))
		return tid == pid ? -1 : 0;
	/* only a plain signal-delivery stop holds a signal we took */
	if (!(status >> 16))
		tasks[nr_tasks - 1].sig = WSTOPSIG(status);
	return 1;
}

/* Stop every thread, the leader first; rescan until no thread is new. */
static int freeze_process(pid_t pid)
{
	static pid_t tids[MAX_TASKS];
	char dir[32];
	int scan, i, n, new;

	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	for (scan = 0; scan < MAX_THREAD_SCANS; scan++) {
		n = numbers_in(dir, tids, MAX_TASKS);
		if (n < 0)
			return -1;
		new = 0;
		if (!listed(seen, nr_seen, pid)) {
			if (stop_thread(pid, pid) != 1)
				return -1;
			new = 1;
		}
		for (i = 0; i < n; i++) {
			if (listed(seen, nr_seen, tids[i]))
				continue;
			if (stop_thread(pid, tids[i]) < 0)
				return -1;
			new = 1;
		}
		if (!new)
			return 0;
	}
	return -1;			/* it keeps creating threads */
}

/* The processes whose parent is `pid`, ascending (a scan of /proc). */
static int children_of(pid_t pid, pid_t *out, int max)
{
	static pid_t all[65536];
	int n = numbers_in("/proc", all, 65536), i, found = 0;

	for (i = 0; i < n && found < max; i++) {
		long long ppid, start;
		char state;

		if (!stat_of(all[i], &state, &ppid, &start) && ppid == pid)
			out[found++] = all[i];
	}
	return found;
}

/*
 * Stop `root` and, with `tree`, its descendants depth first; 0, or -1 with errno (a
 * child that exits meanwhile is left out, as freezer.Freezer.freeze does).
 */
static int freeze(pid_t root, int tree)
{
	static pid_t stack[MAX_TASKS], kids[MAX_TASKS];
	int depth = 0, n;

	stack[depth++] = root;
	while (depth) {
		pid_t pid = stack[--depth];
		int before = nr_tasks;

		if (nr_procs == MAX_TASKS)
			return -1;
		procs[nr_procs++] = pid;
		if (freeze_process(pid)) {
			int err = errno;
			char state = task_state(pid, pid);

			if (pid == root || timed_out ||
			    (err != ESRCH && err != ENOENT && state != 'Z' && state != 'X'))
				return -1;
			while (nr_tasks > before)	/* exited: no longer ours */
				ptrace(PTRACE_DETACH, tasks[--nr_tasks].tid, NULL, NULL);
			nr_procs--;
			continue;
		}
		if (!tree)
			continue;
		n = children_of(pid, kids, MAX_TASKS);
		while (n-- > 0)
			if (!listed(procs, nr_procs, kids[n]) && depth < MAX_TASKS)
				stack[depth++] = kids[n];
	}
	return 0;
}

/* ---------------------------------------------------------------- letting go */

static void detach_all(void)
{
	int i;

	for (i = 0; i < nr_tasks; i++)
		ptrace(PTRACE_DETACH, tasks[i].tid, NULL, (void *)(long)tasks[i].sig);
}

static void wait_exit(pid_t tid)
{
	int status, i;

	for (i = 0; i < 8; i++)		/* stops reported before the kill come first */
		if (wait_status(tid, &status) || WIFEXITED(status) || WIFSIGNALED(status))
			return;
}

/* Whether `pid` is still the process started at `start`, not a zombie we hold up. */
static int still_waited(pid_t pid, long long start)
{
	long long ppid, now;
	char state;

	if (stat_of(pid, &state, &ppid, &now) || now != start)
		return 0;
	return !(state == 'Z' && (ppid == getpid() || ppid == getppid()));
}

/* SIGKILL every process; return once their pids are free (at most REAP_WAIT s). */
static void kill_all(void)
{
	static long long start[MAX_TASKS], ppid[MAX_TASKS];
	struct timespec tick = { 0, 10000000 };
	int p, i, pending, rounds;
	char state;

	for (p = 0; p < nr_procs; p++)
		if (stat_of(procs[p], &state, &ppid[p], &start[p]))
			start[p] = -1;
	for (p = 0; p < nr_procs; p++) {
		int ours = ppid[p] == getpid();	/* our wait would reap it */

		kill(procs[p], SIGKILL);
		/* the leader last: its exit is reported only once its threads are reaped */
		for (i = 0; i < nr_tasks; i++)
			if (tasks[i].tgid == procs[p] && tasks[i].tid != procs[p])
				wait_exit(tasks[i].tid);
		if (!ours)
			wait_exit(procs[p]);
	}
	for (rounds = 0; rounds < REAP_WAIT * 100; rounds++) {
		for (p = 0, pending = 0; p < nr_procs; p++)
			if (start[p] >= 0 && still_waited(procs[p], start[p]))
				pending = 1;
			else
				start[p] = -1;
		if (!pending)
			return;
		nanosleep(&tick, NULL);
	}
}

static void thaw(const struct options *o)
{
	int p;

	if (o->kill_after) {
		kill_all();
		return;
	}
	if (o->stop_after)
		for (p = 0; p < nr_procs; p++)
			kill(procs[p], SIGSTOP);
	detach_all();
}

#include "crfs-front-snapshot.h"

static int resumed;			/* the processes run on while the image is written */
static struct timespec thawed;		/* since then */

struct worker {
	int dev, done;
	struct crfs_snapshot_args args;
	int ret, err;
};

static void *run_snapshot(void *arg)
{
	struct worker *w = arg;

	w->ret = ioctl(w->dev, CRFS_IOC_SNAPSHOT, &w->args);
	w->err = errno;
	eventfd_write(w->done, 1);
	return NULL;
}

/*
 * CRFS_IOC_SNAPSHOT of the stopped processes and their clones into `fd`, in a second
 * thread: this one, their tracer, ends the clones and lets the processes go as soon as
 * the module says they may run on. 0, or -1 with errno as the ioctl's (ENOTTY: a module
 * without snapshots).
 */
static int snapshot_write(int dev, const struct options *o, int fd, unsigned long long *bytes)
{
	struct worker w = { .dev = dev, .ret = -1, .err = ENOMEM };
	struct pollfd pfd[2] = { { .events = POLLIN }, { .events = POLLIN } };
	int resume = eventfd(0, EFD_CLOEXEC), spool = memfd_create("crfs-spool", MFD_CLOEXEC);
	sigset_t all, old;
	pthread_t thread;
	int started;

	w.done = eventfd(0, EFD_CLOEXEC);
	w.args = (struct crfs_snapshot_args){
		.ck = { .pid = o->pid, .fd = fd, .flags = o->tree ? CRFS_CHECKPOINT_TREE : 0 },
		.clones = (unsigned long)clones,
		.nr_clones = nr_clones,
		.resume_fd = resume,
		.spool_fd = spool,
	};
	sigfillset(&all);		/* our signals wait for the write, in this thread */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	started = resume >= 0 && spool >= 0 && w.done >= 0 &&
		  !pthread_create(&thread, NULL, run_snapshot, &w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pfd[0].fd = resume;
	pfd[1].fd = w.done;
	while (started && !resumed) {
		if (poll(pfd, 2, -1) < 0)
			continue;	/* EINTR: noted, acted on once it is written */
		if (pfd[0].revents) {
			end_clones();
			clock_gettime(CLOCK_MONOTONIC, &thawed);
			resumed = 1;
			thaw(o);
		} else if (pfd[1].revents) {
			break;
		}
	}
	if (started)
		pthread_join(thread, NULL);
	*bytes = w.args.ck.written;
	close(resume);
	close(spool);
	close(w.done);
	errno = w.err;
	return w.ret < 0 ? -1 : 0;
}

/*
 * The image of the stopped processes into `fd`: from snapshots, unless --stop, --kill
 * (nothing would run on) or no process could make its clone; stopped for the whole write
 * otherwise, and with a module that has no snapshots.
 */
static int module_write(int dev, const struct options *o, int fd, unsigned long long *bytes)
{
	struct crfs_checkpoint_args args = { .pid = o->pid, .fd = fd };
	int ret, err;

	if (!o->stop && !o->kill_after && make_clones()) {
		ret = snapshot_write(dev, o, fd, bytes);
		err = errno;
		if (!resumed)
			end_clones();
		if (!ret || resumed || err != ENOTTY)
			return ret;
	}
	args.flags = o->tree ? CRFS_CHECKPOINT_TREE : 0;
	ret = ioctl(dev, CRFS_IOC_CHECKPOINT, &args) < 0 ? -1 : 0;
	*bytes = args.written;
	return ret;
}

/* ---------------------------------------------------------------- on a terminal */

#define PROGRESS_DELAY	1.0	/* seconds before the first report (progress.DELAY) */
#define PROGRESS_EVERY	200000000	/* ns between reports (via_kernel.WATCH_INTERVAL) */

struct watch {
	int fd;				/* the image being written */
	pid_t pid;
	_Atomic int stop;
	int shown;
	pthread_t thread;
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) + (now.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * The image's size so far, as the CLI's TerminalProgress shows it when the total is
 * unknown: after a second, every 0.2 s.
 */
static void *watch_image(void *arg)
{
	struct timespec tick = { 0, PROGRESS_EVERY };
	struct watch *w = arg;
	struct stat st;
	double age;

	while (!w->stop) {
		nanosleep(&tick, NULL);
		age = seconds_since(&started);
		if (w->stop || age < PROGRESS_DELAY || fstat(w->fd, &st))
			continue;
		fprintf(stderr, "\rcheckpoint %d: %lld MiB written, %.0f MiB/s", w->pid,
			(long long)(st.st_size >> 20), (st.st_size >> 20) / age);
		w->shown = 1;
	}
	return NULL;
}

/* Progress while the module writes `fd`, on a terminal and without -q; 0 when started. */
static int watch_start(struct watch *w, const struct options *o, int fd)
{
	*w = (struct watch){ .fd = fd, .pid = o->pid };
	if (o->quiet || !isatty(2))
		return -1;
	return pthread_create(&w->thread, NULL, watch_image, w) ? -1 : 0;
}

static void watch_stop(struct watch *w, int running)
{
	if (!running)
		return;
	w->stop = 1;
	pthread_join(w->thread, NULL);
	if (w->shown)
		fputc('\n', stderr);
}

/* ---------------------------------------------------------------- the image */

/* str(pathlib.PurePosixPath(path)), in place: "." parts and repeated "/" dropped. */
static void posix_path(char *path)
{
	char *out = path, *in = path;
	int root = *in == '/' ? (in[1] == '/' && in[2] != '/' ? 2 : 1) : 0;

	out += root;
	in += root;
	while (*in) {
		char *end = strchrnul(in, '/');
		size_t len = end - in;

		if (len && !(len == 1 && *in == '.')) {
			if (out > path + root)
				*out++ = '/';
			memmove(out, in, len);
			out += len;
		}
		in = *end ? end + 1 : end;
	}
	if (out == path)
		*out++ = '.';
	*out = '\0';
}

static void parent_dir(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, size, ".");
	else if (slash == path)
		snprintf(dir, size, "/");
	else
		snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

static int temp_file(const char *dir, char *path, size_t size)
{
	unsigned char r[6];
	int i, fd, n;

	for (i = 0; i < 100; i++) {
		if (getrandom(r, sizeof(r), 0) != sizeof(r))
			return -1;
		n = snprintf(path, size, "%s/.crfs-checkpoint-%02x%02x%02x%02x%02x%02x", dir,
			     r[0], r[1], r[2], r[3], r[4], r[5]);
		if (n < 0 || (size_t)n >= size)
			return -1;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	return -1;
}

/*
 * crfs.checkpoint.api.store_name() without ".ckpt": <comm>-<pid>-<UTC time>; -1 for a
 * comm that is not ASCII, which the CLI names (it counts characters, not bytes).
 */
static int store_name(pid_t pid, time_t when, char *name, size_t size)
{
	char path[32], comm[64], safe[64], stamp[32], *p, *s = safe;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	n = read_small(path, comm, sizeof(comm));
	if (n < 0)
		return -1;
	if (n && comm[n - 1] == '\n')
		comm[--n] = '\0';
	for (p = comm; *p; p++) {
		if ((unsigned char)*p >= 0x80)
			return -1;
		if (s == safe && *p == '.')
			continue;	/* .lstrip(".") of the sanitized name */
		*s++ = isalnum((unsigned char)*p) || strchr("._+-", *p) ? *p : '_';
	}
	*s = '\0';
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime(&when));
	snprintf(name, size, "%s-%d-%s", *safe ? safe : "task", pid, stamp);
	return 0;
}

/* api.join_path(); -1 if it does not fit. */
static int join(char *out, size_t size, const char *dir, const char *name)
{
	const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
	int n;

	if (!strcmp(dir, "."))
		dir = sep = "";
	n = snprintf(out, size, "%s%s%s", dir, sep, name);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Link `tmp` into `dir` under `stem`.ckpt (or stem-N.ckpt); never replace a file. */
static int link_new(const char *tmp, const char *dir, const char *stem, char *out,
		    size_t size)
{
	char name[PATH_MAX];
	int n;

	for (n = 0; n < MAX_NAME_TRIES; n++) {
		if (n)
			snprintf(name, sizeof(name), "%s-%d.ckpt", stem, n);
		else
			snprintf(name, sizeof(name), "%s.ckpt", stem);
		if (join(out, size, dir, name))
			return -1;
		if (!link(tmp, out))
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/*
 * Write the image of the stopped processes and put it in place: its path in `out`, its
 * size in `*bytes`.
 */
static int write_image(int dev, const struct options *o, const char *dir, char *out,
		       size_t size, unsigned long long *bytes)
{
	char tmp[PATH_MAX], stem[128];
	time_t now = time(NULL);
	struct watch watch;
	int fd, written, ok, watching;

	if (!o->output && store_name(o->pid, now, stem, sizeof(stem)))
		return -1;
	fd = temp_file(dir, tmp, sizeof(tmp));
	if (fd < 0)
		return -1;
	watching = !watch_start(&watch, o, fd);
	written = !module_write(dev, o, fd, bytes);
	watch_stop(&watch, watching);
	ok = !close(fd) && written && !interrupted;
	if (ok && o->output)
		ok = !rename(tmp, out);
	else if (ok)
		ok = !link_new(tmp, dir, stem, out, size);
	unlink(tmp);
	return ok ? 0 : -1;
}

/* The CLI's summary_line() of the module's path, on a terminal and without -q. */
static void summary(const struct options *o, const struct timespec *frozen,
		    unsigned long long bytes)
{
	double total = seconds_since(frozen);
	double stopped = resumed ? total - seconds_since(&thawed) : total;

	if (o->quiet || !isatty(2))
		return;
	fprintf(stderr, "checkpoint %d: %swritten by crfs.ko, stopped %.0f ms, %.1f MiB image, %.2f s\n",
		o->pid, resumed ? "snapshot, " : "", stopped * 1000, bytes / 1048576.0, total);
}

/* ---------------------------------------------------------------- main */

static void note_signal(int sig)
{
	interrupted = sig;
}

/*
 * SIGINT, SIGTERM and SIGHUP wait for the module's write (they are not fatal while it
 * runs), then the processes are let go, the temporary file removed, and the signal ends
 * this program as it would have.
 */
static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = note_signal };

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static void die_of(int sig)
{
	signal(sig, SIG_DFL);
	raise(sig);
	exit(128 + sig);
}

int main(int argc, char **argv)
{
	static char dir[PATH_MAX], out[PATH_MAX];
	unsigned long long bytes = 0;
	struct timespec frozen;
	struct options o;
	int dev;

	clock_gettime(CLOCK_MONOTONIC, &started);
	cli_argv = argv;
	if (parse(argc, argv, &o) || o.pid == getpid())
		delegate();
	if (strlen(o.output ? o.output : o.store) >= sizeof(dir) - 32)
		delegate();		/* leaves room for the temporary file's name */
	if (o.output) {
		snprintf(out, sizeof(out), "%s", o.output);
		posix_path(out);
		parent_dir(out, dir, sizeof(dir));
	} else {
		snprintf(dir, sizeof(dir), "%s", o.store);
		posix_path(dir);
	}
	if (!is_process(o.pid) || access(dir, W_OK | X_OK))
		delegate();
	dev = open(DEVICE, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		delegate();
	catch_signals();
	clock_gettime(CLOCK_MONOTONIC, &frozen);
	if (freeze(o.pid, o.tree) || interrupted ||
	    write_image(dev, &o, dir, out, sizeof(out), &bytes)) {
		detach_all();
		close(dev);
		if (interrupted)
			die_of(interrupted);
		if (!timed_out)
			delegate();
		fprintf(stderr, "crfs checkpoint: cannot stop pid %d: task %d did not stop within %d s\n",
			o.pid, timed_out, STOP_TIMEOUT);
		return 1;
	}
	close(dev);
	summary(&o, &frozen, bytes);
	if (!resumed)
		thaw(&o);
	if (printf("%s\n", out) < 0 || fflush(stdout))
		return 1;
	return 0;
}
