/* An epoll whose watched fd was closed since (tests/test_checkpoint.py), as zdtm epoll01:
 * pipe A's read end added as fd 50 (data 0x50) then fd 50 closed; pipe B's read end added
 * as fd 50 too (data 0x51) and kept there. Prints "ready ep=N ar=N aw=N" (hex), then
 * waits to be killed. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int a[2], b[2], ep = epoll_create1(0);

	if (ep < 0 || pipe(a) || pipe(b) || dup2(a[0], 50) != 50)
		return 2;
	ev.data.u64 = 0x50;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 50, &ev) || close(50) || dup2(b[0], 50) != 50)
		return 2;
	ev.data.u64 = 0x51;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, 50, &ev))
		return 2;
	printf("ready ep=%x ar=%x aw=%x\n", ep, a[0], a[1]);
	fflush(stdout);
	for (;;)
		pause();
}
