/* Known values in xmm0..xmm15, kept while the program spins. The ready line is formatted
 * first and written with a bare write syscall after the registers are set: libc calls may
 * use the vector registers, the syscall instruction does not touch them. */
#include <string.h>
#include "ckpt_common.h"

static unsigned char values[16][16];

int main(void)
{
	char line[128];
	for (int reg = 0; reg < 16; reg++)
		for (int byte = 0; byte < 16; byte++)
			values[reg][byte] = (unsigned char)(0x10 * reg + byte + 1);
	snprintf(line, sizeof line, "ready counter=%lx values=%lx\n",
		 (unsigned long)&counter, (unsigned long)values);
	long length = (long)strlen(line), result;
	__asm__ volatile(
		"movdqu 0(%1), %%xmm0\n\t"   "movdqu 16(%1), %%xmm1\n\t"
		"movdqu 32(%1), %%xmm2\n\t"  "movdqu 48(%1), %%xmm3\n\t"
		"movdqu 64(%1), %%xmm4\n\t"  "movdqu 80(%1), %%xmm5\n\t"
		"movdqu 96(%1), %%xmm6\n\t"  "movdqu 112(%1), %%xmm7\n\t"
		"movdqu 128(%1), %%xmm8\n\t" "movdqu 144(%1), %%xmm9\n\t"
		"movdqu 160(%1), %%xmm10\n\t" "movdqu 176(%1), %%xmm11\n\t"
		"movdqu 192(%1), %%xmm12\n\t" "movdqu 208(%1), %%xmm13\n\t"
		"movdqu 224(%1), %%xmm14\n\t" "movdqu 240(%1), %%xmm15\n\t"
		"mov $1, %%eax\n\t"          /* write(1, line, length) */
		"mov $1, %%edi\n\t"
		"mov %2, %%rsi\n\t"
		"mov %3, %%rdx\n\t"
		"syscall"
		: "=&a"(result) : "r"(values), "r"(line), "r"(length)
		: "rdi", "rsi", "rdx", "rcx", "r11", "memory");
	for (;;) {
		counter++;
		__asm__ volatile("pause");
	}
}
