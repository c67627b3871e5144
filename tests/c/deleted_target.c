/*
 * Target of the guest step "deleted" (tests/guest_deleted.py): a process holding what only a
 * restart that recreates deleted things gives back.
 *   fd 10: a regular file unlinked while open, O_RDWR, 23 bytes, mode 0751, owner
 *          1234:567, mtime 1234567890.25, at position 5; fd 11: its dup (one open file description);
 *   fd 12: a memfd "crfs-memfd" holding 11 bytes, at position 3;
 *   fd 13: an O_PATH|O_NOFOLLOW fd on a symlink unlinked since (target "target/of/link");
 *   fd 14: an O_PATH fd on a symlink that still exists;
 *   fd 15: /proc/self/ns/uts opened;
 *   its cwd: a directory (mode 0710) removed after the chdir; fd 16 open on it.
 * Usage: deleted_target WORKDIR [FILEDIR]: with FILEDIR (a user's run) the unlinked file is
 * made there and keeps the caller's owner. Prints "ready", then waits for WORKDIR/stop and prints one
 * line per check ("name=ok" or "name=BAD what") and "done".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[4096];
static const char *filedir;
static uid_t uid = 1234;
static gid_t gid = 567;
/* atime (changed by reads since it is older), mtime */
static const struct timespec mtime[2] = { { 1000000000, 0 }, { 1234567890, 250000000 } };

static const char *at(const char *work, const char *name)
{
	snprintf(path, sizeof(path), "%s/%s", work, name);
	return path;
}

static void move(int fd, int to)
{
	if (fd < 0 || dup2(fd, to) != to)
		exit(2);
	close(fd);
}

static void setup(const char *work)
{
	int fd;

	fd = open(at(filedir, "gone"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "hello, deleted world!\n", 22) != 22 || write(fd, "x", 1) != 1)
		exit(2);
	if (fchmod(fd, 0751) || fchown(fd, uid, gid) || lseek(fd, 5, SEEK_SET) != 5 ||
	    futimens(fd, mtime))
		exit(2);
	dup2(fd, 10);
	dup2(fd, 11);
	close(fd);
	unlink(at(filedir, "gone"));
	fd = memfd_create("crfs-memfd", 0);
	if (fd < 0 || write(fd, "memfd bytes", 11) != 11 || lseek(fd, 3, SEEK_SET) != 3)
		exit(2);
	dup2(fd, 12);
	close(fd);
	if (symlink("target/of/link", at(work, "gone-link")))
		exit(2);
	move(open(at(work, "gone-link"), O_PATH | O_NOFOLLOW), 13);
	unlink(at(work, "gone-link"));
	unlink(at(work, "live-link"));
	if (symlink("/etc/hostname", at(work, "live-link")))
		exit(2);
	move(open(at(work, "live-link"), O_PATH | O_NOFOLLOW), 14);
	move(open("/proc/self/ns/uts", O_RDONLY), 15);
	if (mkdir(at(work, "cwd"), 0710) || chdir(at(work, "cwd")))
		exit(2);
	move(open(".", O_RDONLY | O_DIRECTORY), 16);
	if (rmdir(at(work, "cwd")))
		exit(2);
}

static void check(const char *name, int ok, const char *what)
{
	printf("%s=%s%s\n", name, ok ? "ok" : "BAD ", ok ? "" : what);
}

static void checks(const char *work)
{
	struct stat a, b, ns;
	char buf[64] = { 0 };
	ssize_t n;

	check("deleted_stat", !fstat(10, &a) && a.st_nlink == 0 && a.st_size == 23 &&
	      a.st_mode == (S_IFREG | 0751) && a.st_uid == uid && a.st_gid == gid &&
	      a.st_mtim.tv_sec == mtime[1].tv_sec && a.st_mtim.tv_nsec == mtime[1].tv_nsec,
	      "stat");
	check("deleted_pos", lseek(10, 0, SEEK_CUR) == 5, "pos");
	check("deleted_flags", (fcntl(10, F_GETFL) & O_ACCMODE) == O_RDWR, "flags");
	check("deleted_same_inode", !fstat(11, &b) && a.st_ino == b.st_ino &&
	      a.st_dev == b.st_dev, "inode");
	n = pread(11, buf, sizeof(buf) - 1, 0);
	check("deleted_content", n == 23 && !memcmp(buf, "hello, deleted world!\nx", 23),
	      buf);
	check("deleted_write", pwrite(10, "H", 1, 0) == 1 && pread(11, buf, 1, 0) == 1 &&
	      buf[0] == 'H' && lseek(11, 2, SEEK_SET) == 2 && lseek(10, 0, SEEK_CUR) == 2,
	      "write");
	memset(buf, 0, sizeof(buf));
	n = pread(12, buf, sizeof(buf) - 1, 0);
	check("memfd", n == 11 && !strcmp(buf, "memfd bytes") && lseek(12, 0, SEEK_CUR) == 3,
	      buf);
	n = readlink("/proc/self/fd/12", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	check("memfd_name", !strcmp(buf, "/memfd:crfs-memfd (deleted)"), buf);
	n = readlinkat(13, "", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	check("deleted_symlink", n == 14 && !strcmp(buf, "target/of/link") && !fstat(13, &a) &&
	      S_ISLNK(a.st_mode) && a.st_nlink == 0 &&
	      (fcntl(13, F_GETFL) & O_PATH), buf);
	n = readlinkat(14, "", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	check("live_symlink", !strcmp(buf, "/etc/hostname") && (fcntl(14, F_GETFL) & O_PATH),
	      buf);
	check("ns_file", !fstat(15, &a) && !stat("/proc/self/ns/uts", &ns) &&
	      a.st_ino == ns.st_ino, "ns");
	n = readlink("/proc/self/cwd", buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	snprintf(path, sizeof(path), "%s/cwd (deleted)", work);
	check("deleted_cwd", !strcmp(buf, path) && !stat(".", &a) && a.st_nlink == 0 &&
	      a.st_mode == (S_IFDIR | 0710), buf);
	check("deleted_dir_fd", !fstat(16, &b) && a.st_ino == b.st_ino && a.st_dev == b.st_dev &&
	      (fcntl(16, F_GETFL) & O_DIRECTORY), "not the cwd");
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return 2;
	filedir = argc == 3 ? argv[2] : argv[1];
	if (argc == 3) {
		uid = getuid();
		gid = getgid();
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	setup(argv[1]);
	printf("ready\n");
	for (;;) {
		if (!access(at(argv[1], "stop"), F_OK))
			break;
		usleep(50000);
	}
	checks(argv[1]);
	printf("done\n");
	return 0;
}
