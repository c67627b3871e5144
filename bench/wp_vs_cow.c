/* The quick measurement behind snapshot checkpoints (docs/checkpoint.md): what a program
 * pays to write each page of MIB MiB once after a snapshot was taken, by the two designs:
 *   cow  a fork()ed child holds the snapshot: each first write is a kernel COW fault;
 *   wp   userfaultfd write-protect (QEMU background snapshot): each first write blocks
 *        until a handler thread (here in C, in the same process: the best case; crfs
 *        would do it from another process, in Python) has copied the page out and lifted
 *        the protection with UFFDIO_WRITEPROTECT.
 * Also the time to take each snapshot (fork / register + write-protect).
 * Prints one line per design: "<name> take_ms=<> write_ms=<> us_per_page=<>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static unsigned char *mem, *copy;
static unsigned long size;
static int uffd;

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void touch_all(void)
{
	for (unsigned long i = 0; i < size; i += PAGE)
		mem[i]++;
}

static void *handler(void *arg)
{
	struct uffd_msg msg;

	(void)arg;
	for (;;) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };

		if (poll(&p, 1, -1) < 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		unsigned long page = msg.arg.pagefault.address & ~(PAGE - 1);
		struct uffdio_writeprotect wp = { .range = { page, PAGE }, .mode = 0 };

		memcpy(copy + (page - (unsigned long)mem), (void *)page, PAGE);
		ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
	}
	return NULL;
}

static void cow(void)
{
	double t0 = now_ms(), t1, t2;
	pid_t child = fork();

	if (child == 0) {
		pause();
		_exit(0);
	}
	t1 = now_ms();
	touch_all();
	t2 = now_ms();
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	printf("cow take_ms=%.1f write_ms=%.1f us_per_page=%.2f\n", t1 - t0, t2 - t1,
	       (t2 - t1) * 1e3 / (size / PAGE));
}

static void wp(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	struct uffdio_register reg = { .range = { (unsigned long)mem, size },
				       .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect prot = { .range = { (unsigned long)mem, size },
					    .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	pthread_t thread;
	double t0, t1, t2;

	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) {
		perror("userfaultfd");
		return;
	}
	pthread_create(&thread, NULL, handler, NULL);
	t0 = now_ms();
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) || ioctl(uffd, UFFDIO_WRITEPROTECT, &prot)) {
		perror("register");
		return;
	}
	t1 = now_ms();
	touch_all();
	t2 = now_ms();
	printf("wp take_ms=%.1f write_ms=%.1f us_per_page=%.2f\n", t1 - t0, t2 - t1,
	       (t2 - t1) * 1e3 / (size / PAGE));
}

int main(int argc, char **argv)
{
	size = (argc > 1 ? strtoul(argv[1], NULL, 0) : 256) << 20;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	copy = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || copy == MAP_FAILED)
		return 1;
	memset(mem, 1, size);
	memset(copy, 0, size);
	madvise(mem, size, MADV_NOHUGEPAGE);
	cow();
	wp();
	return 0;
}
