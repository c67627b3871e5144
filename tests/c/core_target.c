/* A process to checkpoint and then debug from its core: a global string set at run time, a
 * counter bumped inside main -> run_loop -> tick, then a block at a known point.
 *
 * Prints one line once it is blocked:
 *   ready pid=<pid> counter=<value> &counter=<addr> a_global=<string>
 *
 * The block is a raw pause(2) issued from wait_here itself, so the innermost frames are
 * ours and a backtrace needs only this program's debug info, not libc's unwind tables. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TICKS 4242

char a_global[] = "not yet set, a placeholder of the final string's size....";
volatile long counter;

static void pause_raw(void)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(34L /* __NR_pause */) : "rcx", "r11", "memory");
#else
	long ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(29L /* __NR_pause */) : "memory");
#endif
}

void wait_here(void)
{
	printf("ready pid=%d counter=%ld &counter=%p a_global=%s\n", (int)getpid(), counter,
	       (void *)&counter, a_global);
	fflush(stdout);
	for (;;)
		pause_raw();
}

void tick(void)
{
	counter++;
	if (counter == TICKS)
		wait_here();
}

void run_loop(void)
{
	for (;;)
		tick();
}

int main(void)
{
	strcpy(a_global, "hello from core_target");
	run_loop();
	return 0;
}
