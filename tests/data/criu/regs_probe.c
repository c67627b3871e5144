/* Registers of every thread of a process, as ptrace sees them, one JSON object a line:
 *   regs_probe PID   ->  {"tid": T, "rip": N, ...}
 * Each thread is seized, interrupted, read and detached (it goes on as before: a thread
 * blocked in pause() or a futex restarts its system call). make-fixtures records this
 * just before `criu dump`, as the truth the dumped registers are checked against. */
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#define R(name) printf(", \"" #name "\": %llu", (unsigned long long)regs.name)

static int probe(int tid)
{
	struct user_regs_struct regs;
	int status;

	if (ptrace(PTRACE_SEIZE, tid, 0, 0) || ptrace(PTRACE_INTERRUPT, tid, 0, 0))
		return perror("seize"), 1;
	if (waitpid(tid, &status, __WALL) != tid)
		return perror("waitpid"), 1;
	if (ptrace(PTRACE_GETREGS, tid, 0, &regs))
		return perror("getregs"), 1;
	printf("{\"tid\": %d", tid);
	R(r15); R(r14); R(r13); R(r12); R(rbp); R(rbx); R(r11); R(r10); R(r9); R(r8);
	R(rax); R(rcx); R(rdx); R(rsi); R(rdi); R(orig_rax); R(rip); R(cs); R(eflags);
	R(rsp); R(ss); R(fs_base); R(gs_base); R(ds); R(es); R(fs); R(gs);
	printf("}\n");
	return ptrace(PTRACE_DETACH, tid, 0, 0) ? (perror("detach"), 1) : 0;
}

int main(int argc, char **argv)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int bad = 0;

	if (argc != 2)
		return fprintf(stderr, "usage: regs_probe PID\n"), 2;
	snprintf(path, sizeof(path), "/proc/%s/task", argv[1]);
	dir = opendir(path);
	if (!dir)
		return perror(path), 1;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			bad |= probe(atoi(d->d_name));
	closedir(dir);
	return bad;
}
