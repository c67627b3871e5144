/* Files with an owner for SIGIO (tests/guest_fown.py, kmod/crfs_fown.c).
 *
 * Pipe p: O_ASYNC, owned by this process (F_SETOWN_EX F_OWNER_PID), F_SETSIG SIGUSR2.
 * Pipe q: O_ASYNC, owned by the child (F_SETOWN), SIGIO. The child counts its SIGIOs on
 * pipe r. Prints "ready"; on SIGUSR1 one line:
 *   state own=TYPE/SELF sig=N async=A cown=CHILD usr2=FD/CODE child_sigio=C
 * where SELF is 1 when p's owner is getpid(), CHILD 1 when q's is the child, usr2 the
 * si_fd and si_code of the SIGUSR2 a write into p sends, C the bytes the child wrote after
 * a write into q. On SIGTERM it kills the child, prints "term" and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int p[2], q[2], r[2];
static pid_t child;
static volatile sig_atomic_t usr1, term, usr2_fd = -1, usr2_code;

static void on_usr1(int sig) { usr1 = 1; }
static void on_term(int sig) { term = 1; }
static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	usr2_fd = si->si_fd;
	usr2_code = si->si_code;
}
static void on_sigio(int sig) { write(r[1], "c", 1); }

static void handle(int sig, void (*fn)(int))
{
	struct sigaction sa = { .sa_handler = fn };
	sigaction(sig, &sa, NULL);
}

static int async_owned(int fd, int type, pid_t pid, int sig)
{
	struct f_owner_ex ex = { .type = type, .pid = pid };

	return fcntl(fd, F_SETOWN_EX, &ex) || (sig && fcntl(fd, F_SETSIG, sig)) ||
	       fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC);
}

static int child_sigios(void)
{
	struct pollfd pfd = { .fd = r[0], .events = POLLIN };
	char buf[16];
	int n = 0;

	while (poll(&pfd, 1, 2000) == 1) {
		int got = read(r[0], buf, sizeof(buf));
		if (got <= 0)
			break;
		n += got;
		pfd.revents = 0;
		if (poll(&pfd, 1, 100) != 1)
			break;
	}
	return n;
}

static void report(void)
{
	struct f_owner_ex ex = { 0 };
	char c = 'x', drain[8];

	fcntl(p[0], F_GETOWN_EX, &ex);
	write(p[1], &c, 1);	/* SIGUSR2 to us, with si_fd p[0] */
	read(p[0], drain, sizeof(drain));
	write(q[1], &c, 1);	/* SIGIO to the child */
	read(q[0], drain, sizeof(drain));
	printf("state own=%d/%d sig=%d async=%d cown=%d usr2=%d/%d child_sigio=%d\n",
	       ex.type, ex.pid == getpid(), fcntl(p[0], F_GETSIG),
	       !!(fcntl(p[0], F_GETFL) & O_ASYNC), fcntl(q[0], F_GETOWN) == child,
	       usr2_fd == p[0] ? 1 : (int)usr2_fd, (int)usr2_code, child_sigios());
	fflush(stdout);
}

int main(void)
{
	struct sigaction sa = { .sa_sigaction = on_usr2, .sa_flags = SA_SIGINFO };

	if (pipe(p) || pipe(q) || pipe2(r, O_NONBLOCK))
		return 1;
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	fcntl(q[0], F_SETFL, O_NONBLOCK);
	child = fork();
	if (child == 0) {
		handle(SIGIO, on_sigio);
		for (;;)
			pause();
	}
	sigaction(SIGUSR2, &sa, NULL);
	handle(SIGUSR1, on_usr1);
	handle(SIGTERM, on_term);
	if (async_owned(p[0], F_OWNER_PID, getpid(), SIGUSR2) ||
	    async_owned(q[0], F_OWNER_PID, child, 0))
		return 2;
	usleep(100000);		/* the child has its SIGIO handler */
	printf("ready\n");
	fflush(stdout);
	while (!term) {
		pause();
		if (usr1) {
			usr1 = 0;
			report();
		}
	}
	kill(child, SIGKILL);
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	printf("term\n");
	fflush(stdout);
	return 0;
}
