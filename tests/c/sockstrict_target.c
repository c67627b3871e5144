/* The program whose listening socket, unaccepted connection, SEQPACKET pair and strict-mode
 * child tests/test_kmod_guest.py (step sockstrict) checkpoints and restores.
 *
 *   sockstrict_target DIR LIMIT [dirty]
 *   sockstrict_target -filter PROG ARGS...	(runs PROG under an allow-all seccomp filter)
 *
 * Holds, at fixed fds:
 *   3  DIR/sockstrict.log, O_WRONLY|O_APPEND
 *   4  a SOCK_STREAM socket listening (backlog 7) at DIR/l.sock, whose file is chmod 0640
 *      and, as root, chown 18943:58467
 *   5  a socket connected to 4, not accepted yet (dirty: "early" sent into it)
 *   6, 7  a connection made by connect (6) and accept (7): "ping" queued for 7, "pong" for 6;
 *      7 is named as the listener, 6's peer too, 6 has no name
 *   8, 9  a SOCK_SEQPACKET socketpair: "one" and "three" queued for 9
 *   10 a SOCK_SEQPACKET socket to the child, which is in SECCOMP_MODE_STRICT, blocked in
 *      read() on the other end; it writes back what it reads, then _exit()s
 * then ticks (~100 ms): "tick N pid=P" on stdout and in the log. Once DIR/stop exists it
 * checks them all and prints "sockstrict=ok" (or "sockstrict=FAIL:what"), then exits with
 * status 3; at tick LIMIT without it, with status 5. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MODE	0640
#define UID	18943
#define GID	58467

static char dir[96];
static struct sockaddr_un addr;
static uid_t want_uid;
static gid_t want_gid;
static pid_t child;

static void at(int fd, int want)
{
	if (fd < 0 || (fd != want && (dup2(fd, want) < 0 || close(fd)))) {
		perror("at");
		exit(2);
	}
}

static void put(int fd, const char *text)
{
	if (send(fd, text, strlen(text), MSG_NOSIGNAL) != (ssize_t)strlen(text))
		exit(2);
}

static void strict_child(int sk)
{
	char c;

	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT))
		syscall(SYS_exit, 7);
	if (write(sk, "R", 1) != 1)
		syscall(SYS_exit, 8);
	if (read(sk, &c, 1) != 1)
		syscall(SYS_exit, 9);
	if (write(sk, &c, 1) != 1)
		syscall(SYS_exit, 10);
	syscall(SYS_exit, 0);
}

static void listener(void)
{
	socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(addr.sun_path) + 1;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	unlink(addr.sun_path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) || chmod(addr.sun_path, MODE))
		exit(2);
	want_uid = getuid();
	want_gid = getgid();
	if (!geteuid()) {
		want_uid = UID;
		want_gid = GID;
		if (chown(addr.sun_path, UID, GID))
			exit(2);
	}
	if (listen(fd, 7))
		exit(2);
	at(fd, 4);
}

static int connected(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
		exit(2);
	return fd;
}

static void setup(int dirty)
{
	char path[128];
	int sv[2];

	snprintf(path, sizeof(path), "%s/sockstrict.log", dir);
	at(open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), 3);
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/l.sock", dir);
	listener();
	at(connected(), 6);
	at(accept(4, NULL, NULL), 7);
	at(connected(), 5);	/* after the accept: it stays in the queue */
	if (dirty)
		put(5, "early");
	put(6, "ping");
	put(7, "pong");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		exit(2);
	at(sv[0], 8);
	at(sv[1], 9);
	put(8, "one");
	put(8, "three");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		exit(2);
	child = fork();
	if (child < 0)
		exit(2);
	if (!child) {
		close(sv[0]);
		strict_child(sv[1]);
	}
	close(sv[1]);
	at(sv[0], 10);
}

static const char *check_file(void)
{
	struct stat st;

	if (stat(addr.sun_path, &st) || !S_ISSOCK(st.st_mode))
		return "socket file";
	if ((st.st_mode & 07777) != MODE)
		return "socket file mode";
	if (st.st_uid != want_uid || st.st_gid != want_gid)
		return "socket file owner";
	return NULL;
}

/* Reads exactly @text from @fd (blocking, one recv). */
static int got(int fd, const char *text)
{
	char buf[64] = { 0 };
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

	return n == (ssize_t)strlen(text) && !strcmp(buf, text);
}

/* @fd's own name (@peer: its peer's) is the listener's path. */
static int named(int fd, int peer)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	if ((peer ? getpeername(fd, (struct sockaddr *)&sa, &len) :
	     getsockname(fd, (struct sockaddr *)&sa, &len)))
		return 0;
	return len > offsetof(struct sockaddr_un, sun_path) && !strcmp(sa.sun_path, addr.sun_path);
}

static const char *check_listener(void)
{
	int c;

	if (fcntl(4, F_SETFL, O_NONBLOCK))
		return "listener flags";
	c = accept(4, NULL, NULL);
	if (c < 0)
		return "accept: no connection waiting";
	if (accept(4, NULL, NULL) >= 0 || errno != EAGAIN)
		return "accept: a second connection";
	put(5, "hi");
	if (!got(c, "hi"))
		return "queued connection: client to server";
	put(c, "ho");
	if (!got(5, "ho"))
		return "queued connection: server to client";
	if (!got(7, "ping") || !got(6, "pong"))
		return "accepted pair: queued bytes";
	put(6, "again");
	put(7, "back");
	if (!got(7, "again") || !got(6, "back"))
		return "accepted pair: both ways";
	if (!named(7, 0) || !named(6, 1) || named(6, 0) || !named(4, 0))
		return "accepted pair: names";
	return NULL;
}

/* The child's pid now: a restart without the image's pids gives it another. */
static pid_t child_now(void)
{
	char path[64];
	int pid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
	f = fopen(path, "r");
	if (!f || fscanf(f, "%d", &pid) != 1)
		pid = -1;
	if (f)
		fclose(f);
	return pid;
}

static const char *check_seccomp(void)
{
	char path[64], line[256], c = 0;
	int mode = -1, status;
	FILE *f;

	child = child_now();
	snprintf(path, sizeof(path), "/proc/%d/status", child);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		sscanf(line, "Seccomp:\t%d", &mode);
	if (f)
		fclose(f);
	printf("seccomp=%d\n", mode);
	if (mode != SECCOMP_MODE_STRICT)
		return "child not in strict mode";
	if (!got(9, "one") || !got(9, "three"))
		return "seqpacket boundaries";
	if (recv(10, &c, 1, 0) != 1 || c != 'R')
		return "child's first byte";
	put(10, "Q");
	if (recv(10, &c, 1, 0) != 1 || c != 'Q')
		return "child's echo";
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		return "child's exit";
	return NULL;
}

static void check(void)
{
	const char *bad = check_file();

	if (!bad)
		bad = check_listener();
	if (!bad)
		bad = check_seccomp();
	if (bad)
		printf("sockstrict=FAIL:%s\n", bad);
	else
		printf("sockstrict=ok\n");
	fflush(stdout);
	exit(3);
}

/* PROG under an allow-all filter: a seccomp mode of its own (its restart must refuse). */
static int filtered(char **argv)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return 2;
	execv(argv[0], argv);
	return 2;
}

int main(int argc, char **argv)
{
	struct timespec tick = { 0, 100 * 1000 * 1000 };
	char stop[128], line[128];
	long limit, i;

	if (argc > 2 && !strcmp(argv[1], "-filter"))
		return filtered(argv + 2);
	if (argc < 3 || strlen(argv[1]) > 80)
		return 2;
	snprintf(dir, sizeof(dir), "%s", argv[1]);
	limit = atol(argv[2]);
	setup(argc > 3 && !strcmp(argv[3], "dirty"));
	snprintf(stop, sizeof(stop), "%s/stop", dir);
	for (i = 0; i < limit; i++) {
		int n = snprintf(line, sizeof(line), "tick %ld pid=%d\n", i, getpid());

		fputs(line, stdout);
		fflush(stdout);
		if (write(3, line, n) != n)
			return 2;
		if (!access(stop, F_OK))
			check();
		nanosleep(&tick, NULL);
	}
	return 5;
}
