/* A process in SECCOMP_MODE_STRICT, for snapshot checkpoints: a clone() injected into it
 * kills it unless the tracer keeps seccomp suspended. Prints "ready", enters strict mode,
 * blocks in read() on stdin; given a byte, writes "alive\n" and exits (SYS_exit: strict
 * mode allows no exit_group). */
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	char c;

	printf("ready\n");
	fflush(stdout);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) < 0)
		return 1;
	if (read(0, &c, 1) == 1)
		write(1, "alive\n", 6);
	syscall(SYS_exit, 0);
	return 0;
}
