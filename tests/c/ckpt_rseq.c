/* A thread that spins inside an rseq critical section, which only an abort (the kernel
 * moving it to abort_ip, after a preemption, migration or signal) gets it out of; each abort
 * is counted, and the thread enters the section again.
 *
 * It uses the struct rseq glibc registered for it (glibc >= 2.35). Prints
 *     ready counter=.. tid=<spinner> rseq=<its struct rseq, 0 if none registered>
 *           cs=<its struct rseq_cs> start=<start_ip> end=<start_ip + post_commit_offset>
 *           aborts=<address of the abort count>
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/rseq.h>
#include <unistd.h>
#include "ckpt_common.h"

extern const char cs_start[], cs_end[];
extern struct rseq_cs spin_cs;
static volatile unsigned long aborts;
static volatile unsigned long spinner_tid, spinner_rseq;

static void *spinner(void *arg)
{
	struct rseq *rseq = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	spinner_rseq = (unsigned long)rseq;
	spinner_tid = (unsigned long)gettid();
	for (;;) {
		__asm__ volatile(
			".pushsection .data.rel.ro, \"aw\"\n"
			".balign 32\n"
			".globl spin_cs\n"
			"spin_cs: .long 0, 0\n"
			".quad cs_start, cs_end - cs_start, 4f\n"
			".popsection\n"
			"leaq spin_cs(%%rip), %%rax\n"
			"movq %%rax, %c[cs](%[rseq])\n"
			".globl cs_start\n"
			"cs_start: jmp cs_start\n"    /* left only through an abort */
			".globl cs_end\n"
			"cs_end: jmp 5f\n"
			".long 0x53053053\n"          /* RSEQ_SIG, right before the abort handler */
			"4:\n"
			"5:\n"
			:
			: [rseq] "r"(rseq), [cs] "i"(__builtin_offsetof(struct rseq, rseq_cs))
			: "rax", "memory");
		aborts++;
	}
	return NULL;
}

int main(void)
{
	pthread_t thread;
	if (__rseq_size == 0) {
		ready("tid=0 rseq=0 cs=0 start=0 end=0 aborts=0");
		count_forever();
	}
	if (pthread_create(&thread, NULL, spinner, NULL))
		return 1;
	while (!aborts)
		usleep(1000);
	ready("tid=%lx rseq=%lx cs=%lx start=%lx end=%lx aborts=%lx", spinner_tid, spinner_rseq,
	      (unsigned long)&spin_cs, (unsigned long)cs_start, (unsigned long)cs_end,
	      (unsigned long)&aborts);
	count_forever();
}
