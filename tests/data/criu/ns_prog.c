/* The "ns" scenario of tests/data/criu/make-fixtures: one process in its own IPC and UTS
 * namespaces (so criu dumps them: ipcns-*.img, utsns-*.img), in a cgroup of its own (put
 * there by make-fixtures, so criu writes cgroup.img), holding SysV shared memory and inet
 * sockets.
 *
 *   ns_prog [host-ipc]   (as root: unshare(CLONE_NEWIPC | CLONE_NEWUTS) needs
 *                         CAP_SYS_ADMIN; host-ipc: the UTS namespace only, the segments
 *                         in the caller's IPC namespace, removed once attached)
 *
 * It sets the hostname "crfs-ns", creates two SysV segments: key 0xc0ffee, 3 pages, mode
 * 0640, attached, its first page holding "crfs-sysv-shm page 0" and its third "... page 2"
 * (the second never touched); and IPC_PRIVATE, 100 bytes, mode 0600, not attached,
 * holding "unattached segment". Then a TCP socket listening on 127.0.0.1, a UDP socket
 * bound to 127.0.0.1 and a TCP socket listening on ::1 (ports from the kernel), prints the
 * markers and "ready" and waits in pause(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <unistd.h>

static long check(long ret, const char *what)
{
	if (ret < 0) {
		perror(what);
		_exit(1);
	}
	return ret;
}

static int inet_socket(int type, struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = check(socket(AF_INET, type, 0), "socket");

	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr->sin_port = 0;
	check(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), "bind");
	if (type == SOCK_STREAM)
		check(listen(fd, 5), "listen");
	check(getsockname(fd, (struct sockaddr *)addr, &len), "getsockname");
	return fd;
}

static int tcp6_listener(int *port)
{
	struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t len = sizeof(addr);
	int fd = check(socket(AF_INET6, SOCK_STREAM, 0), "socket");

	check(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), "bind6");
	check(listen(fd, 3), "listen");
	check(getsockname(fd, (struct sockaddr *)&addr, &len), "getsockname");
	*port = ntohs(addr.sin6_port);
	return fd;
}

int main(int argc, char **argv)
{
	int host_ipc = argc > 1 && !strcmp(argv[1], "host-ipc");
	long page = sysconf(_SC_PAGESIZE);
	struct sockaddr_in taddr, uaddr;
	int shm1, shm2, tcp, udp, tcp6, port6;
	char *p, *q;

	setvbuf(stdout, NULL, _IOLBF, 0);
	check(unshare((host_ipc ? 0 : CLONE_NEWIPC) | CLONE_NEWUTS), "unshare");
	check(sethostname("crfs-ns", 7), "sethostname");
	shm1 = check(shmget(0xc0ffee, 3 * page, IPC_CREAT | 0640), "shmget");
	p = shmat(shm1, NULL, 0);
	check(p == (void *)-1 ? -1 : 0, "shmat");
	strcpy(p, "crfs-sysv-shm page 0");
	strcpy(p + 2 * page, "crfs-sysv-shm page 2");
	shm2 = check(shmget(IPC_PRIVATE, 100, IPC_CREAT | 0600), "shmget");
	q = shmat(shm2, NULL, 0);
	check(q == (void *)-1 ? -1 : 0, "shmat");
	strcpy(q, "unattached segment");
	check(shmdt(q), "shmdt");
	if (host_ipc) {		/* gone with their last user: nothing left behind */
		check(shmctl(shm1, IPC_RMID, NULL), "shmctl");
		check(shmctl(shm2, IPC_RMID, NULL), "shmctl");
	}
	tcp = inet_socket(SOCK_STREAM, &taddr);
	udp = inet_socket(SOCK_DGRAM, &uaddr);
	tcp6 = tcp6_listener(&port6);
	printf("proc %d shm=%d@%p shm2=%d tcp=%d:%d udp=%d:%d tcp6=%d:%d\n", getpid(), shm1,
	       (void *)p, shm2, tcp, ntohs(taddr.sin_port), udp, ntohs(uaddr.sin_port), tcp6,
	       port6);
	printf("ready\n");
	for (;;)
		pause();
	return 0;
}
