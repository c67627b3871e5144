/* SPDX-License-Identifier: GPL-2.0 */
/*
 * crfs-restart: the POSIX timers of the process (CRFS_HDR_POSIX_TIMER records), included
 * by crfs-restart.c. The module cannot create or arm one (kmod/crfs_timers.c), so each
 * process makes its own before its RESTART: they live in its signal_struct, which the
 * restore keeps, and the module checks them against the image.
 *
 * read_posix_timers() reads the records of the tasks of our process (at most TIMERS_MAX,
 * of 64 bytes); if there are any, every signal (glibc's 32 and 33 too: a SIGEV_THREAD
 * timer's is 32) is blocked before the threads start (they inherit the mask; the module
 * sets each thread's own from the image), so that a timer that fires before the restore
 * only queues its signal. make_posix_timers(), after the
 * threads started, creates them in id order with timer_create(2): Linux gives a process
 * its timer ids in increasing order, so an id below the image's is deleted at once (a
 * filler for a gap), one above it fails. SIGEV_THREAD_ID targets the thread restoring
 * that image tid. Then each is armed with timer_settime(2), relative: the time left at
 * checkpoint (1 ns for a timer whose signal was queued: it fires at once and queues it
 * again) and the interval. -T makes none (the module then refuses the image).
 */
#define HDR_POSIX_TIMER		8024	/* CRFS_HDR_POSIX_TIMER */
#define TIMERS_MAX		1024	/* CRFS_MAX_TIMERS */
#define TIMER_ID_GAP_MAX	(1 << 20)	/* fillers made for one id, at most */
#define NSEC			1000000000ULL

struct timer_rec {		/* struct crfs_hdr_posix_timer */
	uint32_t type, len;
	int32_t it_id, clockid, signo, notify, notify_tid;
	uint32_t flags;
	uint64_t sigev_value, value_ns, interval_ns;
	int64_t overrun;
};

static struct timer_rec timers[TIMERS_MAX];
static int nr_timers;
static int no_timers;			/* -T */
static pid_t thread_tid[MAX_TASKS];	/* the tid restoring each task (atomic) */

static void timers_fail(int err, const char *fmt, long a, long b)
{
	char why[96];

	snprintf(why, sizeof(why), fmt, a, b);
	fail("timers", err, why, UINT64_MAX, HDR_POSIX_TIMER);
}

/* The POSIX_TIMER records of the tasks of our process. */
static void read_posix_timers(int fd)
{
	uint32_t hdr[2];
	off_t pos = 0;
	long task = -1;

	while (!no_timers && pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) &&
	       hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_TASK)
			task++;
		if (hdr[0] == HDR_POSIX_TIMER && task >= 0 && task < nr_tasks &&
		    leader_of[task] == (int)task_index) {
			if (hdr[1] != sizeof(struct timer_rec) || nr_timers == TIMERS_MAX)
				timers_fail(EINVAL, "POSIX_TIMER of %ld bytes, or more than %ld",
					    hdr[1], TIMERS_MAX);
			read_at(fd, &timers[nr_timers++], sizeof(struct timer_rec), pos);
		}
		pos += hdr[1];
	}
	if (nr_timers) {	/* raw: glibc keeps its SIGCANCEL (32, SIGTIMER) unblocked */
		uint64_t all = ~0ULL;

		syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
	}
}

/* The tid that restores image thread @vtid of our process. */
static pid_t real_tid(int32_t vtid)
{
	int k, tries;

	for (k = 0; k < nr_tasks; k++) {
		if (pids[k].vpid != vtid || leader_of[k] != (int)task_index)
			continue;
		if (k == (int)task_index)
			return getpid();
		for (tries = 0; tries < 100000; tries++) {
			pid_t tid = __atomic_load_n(&thread_tid[k], __ATOMIC_ACQUIRE);

			if (tid)
				return tid;
			sched_yield();
		}
	}
	timers_fail(EINVAL, "SIGEV_THREAD_ID to tid %ld, not a thread of ours (%ld)", vtid,
		    task_index);
	return -1;
}

/* Timer @t at its id: fillers below it deleted. */
static void create_timer(const struct timer_rec *t)
{
	struct sigevent ev;
	int id = -1, n;

	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = t->notify;
	ev.sigev_signo = t->signo;
	ev.sigev_value.sival_ptr = (void *)(uintptr_t)t->sigev_value;
	if (t->notify & SIGEV_THREAD_ID)
		ev._sigev_un._tid = real_tid(t->notify_tid);
	for (n = 0; n <= TIMER_ID_GAP_MAX; n++) {
		if (syscall(SYS_timer_create, t->clockid, &ev, &id))
			timers_fail(errno, "timer_create for timer %ld (clock %ld)", t->it_id,
				    t->clockid);
		if (id >= t->it_id)
			break;
		syscall(SYS_timer_delete, id);
	}
	if (id != t->it_id)
		timers_fail(EBUSY, "timer %ld: the kernel gave id %ld", t->it_id, id);
}

static void arm_timer(const struct timer_rec *t)
{
	struct itimerspec its = {
		.it_interval = { t->interval_ns / NSEC, t->interval_ns % NSEC },
		.it_value = { t->value_ns / NSEC, t->value_ns % NSEC },
	};

	if (syscall(SYS_timer_settime, t->it_id, 0, &its, NULL))
		timers_fail(errno, "timer_settime of timer %ld", t->it_id, 0);
}

static void make_posix_timers(void)
{
	int k;

	for (k = 0; k < nr_timers; k++)
		create_timer(&timers[k]);
	for (k = 0; k < nr_timers; k++)
		arm_timer(&timers[k]);
}

/*
 * ITIMER_VIRTUAL and ITIMER_PROF of the process (its SIGNAL record): the module cannot
 * arm them (set_process_cpu_timer() is not exported), so each process arms its own with
 * setitimer(2) right before its RESTART (fork(2) does not pass them on), with SIGVTALRM
 * and SIGPROF blocked meanwhile; the module checks them against the image (-T: none, it
 * then refuses an image with one).
 */
#define HDR_SIGNAL		602	/* CKPT_HDR_SIGNAL */
#define SIGNAL_ITIMERS		(8 + 16 * 16 + 16)	/* it_virt_value: after rlim[16] and ITIMER_REAL */

static uint64_t cpu_itimers[4];		/* virt value, incr, prof value, incr (ns) */

static void read_itimers(int fd)
{
	uint32_t hdr[2];
	off_t pos = 0;
	long task = -1;
	sigset_t set;

	while (!no_timers && pread(fd, hdr, sizeof(hdr), pos) == sizeof(hdr) &&
	       hdr[1] >= sizeof(hdr)) {
		if (hdr[0] == HDR_TASK)
			task++;
		if (hdr[0] == HDR_SIGNAL && task >= 0 && task < nr_tasks &&
		    leader_of[task] == (int)task_index) {
			if (hdr[1] < SIGNAL_ITIMERS + sizeof(cpu_itimers) ||
			    pread(fd, cpu_itimers, sizeof(cpu_itimers), pos + SIGNAL_ITIMERS) !=
			    sizeof(cpu_itimers))
				memset(cpu_itimers, 0, sizeof(cpu_itimers));
			break;
		}
		pos += hdr[1];
	}
	if (!cpu_itimers[0] && !cpu_itimers[2])
		return;
	sigemptyset(&set);
	sigaddset(&set, SIGVTALRM);
	sigaddset(&set, SIGPROF);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static void ns_timeval(uint64_t ns, struct timeval *tv, uint64_t round)
{
	ns += round;
	tv->tv_sec = ns / NSEC;
	tv->tv_usec = ns % NSEC / 1000;
}

/* The time left rounded up (not 0 when armed), the interval to the µs. */
static void arm_itimers(void)
{
	static const int which[2] = { ITIMER_VIRTUAL, ITIMER_PROF };
	struct itimerval it;
	int k;

	for (k = 0; k < 2; k++) {
		if (!cpu_itimers[2 * k])
			continue;
		ns_timeval(cpu_itimers[2 * k], &it.it_value, 999);
		ns_timeval(cpu_itimers[2 * k + 1], &it.it_interval, 0);
		if (setitimer(which[k], &it, NULL))
			timers_fail(errno, "setitimer(%ld) of the image's %ld s", which[k],
				    (long)it.it_value.tv_sec);
	}
}
