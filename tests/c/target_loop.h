/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The main loop the guest steps' targets share (unix_target.c, anonfd_target.c,
 * pipes_target.c): set up, then tick every 100 ms ("tick N pid=P" on fd 1, and on
 * `copy_fd` unless it is -1) until DIR/stop exists; then check and say "TAG=ok" or
 * "TAG=FAIL:why" and exit 3. A write that fails exits 4; `limit` ticks without a stop, 5.
 */
#ifndef TARGET_LOOP_H
#define TARGET_LOOP_H

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int say(int copy_fd, const char *line, int len)
{
	if (write(1, line, len) != len)
		return -1;
	if (copy_fd >= 0 && write(copy_fd, line, len) != len)
		return -1;
	return 0;
}

static int target_loop(const char *dir, long limit, const char *tag, int copy_fd,
		       void (*setup)(void), const char *(*check)(void))
{
	struct timespec tick = { 0, 100000000 };
	char stop[4200], line[160];
	const char *bad;
	long n;
	int len;

	snprintf(stop, sizeof(stop), "%s/stop", dir);
	setup();
	for (n = 0; n < limit; n++) {
		len = snprintf(line, sizeof(line), "tick %ld pid=%d\n", n, getpid());
		if (say(copy_fd, line, len))
			return 4;
		if (access(stop, F_OK) == 0) {
			bad = check();
			len = snprintf(line, sizeof(line), "%s=%s%s\n", tag,
				       bad ? "FAIL:" : "ok", bad ? bad : "");
			return say(copy_fd, line, len) ? 4 : 3;
		}
		nanosleep(&tick, NULL);
	}
	return 5;
}

#endif
