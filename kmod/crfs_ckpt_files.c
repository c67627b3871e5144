// SPDX-License-Identifier: GPL-2.0
/*
 * CHECKPOINT: a task's file table, as crfs/model/ckpt_dump.py writes it (write_files), so
 * that RESTART (crfs_files.c) gives a module checkpoint its fds back:
 *
 *   OBJREF{FILE_TABLE} FILE_TABLE{nfds} { [OBJREF{FILE} FILE ...] FILE_DESC }*
 *
 * once per files_struct (threads share it), before the MM object. The fds ascend; each
 * open file description is written once, at its first fd (the same struct file: the
 * same objref):
 *   regular files, directories, devices	GENERIC FILE, FILE_NAME
 *   pipes					PIPE FILE{pipe_objref} [PIPE_BUF]
 *   FIFOs					FIFO FILE{pipe_objref} FILE_NAME [PIPE_BUF]
 *   eventfd, timerfd, signalfd, epoll	their FILE (crfs_ckpt_anon.c); then, after the
 *						last FILE_DESC, each epoll's EPOLL_ITEMS
 *   O_PATH fds of any other kind		GENERIC FILE, FILE_NAME
 *   regular files and symlinks deleted	CRFS_FILE_DELETED STRING{link} BUFFER [OWNER]
 *   sockets, other anon inodes...		CRFS_FILE_OPAQUE{kind} STRING{link}
 * Names are d_path() from the caller's root, the text of the /proc/<pid>/fd links. A
 * pipe's inode is a CKPT_OBJ_INODE (no OBJREF record): its first end is followed by
 * PIPE_BUF, the bytes buffered in it, copied (not consumed) under the pipe's mutex.
 *
 * The table is taken under task_lock() and the files_struct's file_lock, with a
 * reference to each file, into an array allocated before; the records are written after.
 */
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/magic.h>
#include <linux/pipe_fs_i.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/slab.h>

#include "crfs.h"

/* as the userspace writer's f_mode: FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE */
#define CK_FMODE_SEEK	(FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE)

struct ck_fd {
	struct file *file;		/* a reference */
	int fd;
	bool cloexec;
};

struct ck_table {
	struct crfs_ckpt *ck;
	struct ck_fd *fds;		/* CRFS_MAX_FDS of them, nr taken */
	u32 nr;
	char *path;			/* PATH_MAX scratch */
	void *pipe_buf;			/* CRFS_MAX_PIPE_BUF scratch */
	struct crfs_ck_anon *anon;	/* epolls' watches (crfs_ckpt_anon.c) */
};

/* The open fds of @files, with references; -EMFILE beyond CRFS_MAX_FDS. */
static int snapshot_fds(struct ck_table *tb, struct files_struct *files)
{
	struct fdtable *fdt;
	unsigned int fd;
	int ret = 0;

	spin_lock(&files->file_lock);
	fdt = files_fdtable(files);
	for (fd = 0; fd < fdt->max_fds; fd++) {
		struct file *file;

		file = rcu_dereference_protected(fdt->fd[fd],
						 lockdep_is_held(&files->file_lock));

		if (!file)
			continue;
		if (tb->nr >= CRFS_MAX_FDS || fd >= CRFS_MAX_FD_NUMBER) {
			ret = -EMFILE;
			break;
		}
		tb->fds[tb->nr].file = get_file(file);
		tb->fds[tb->nr].fd = fd;
		tb->fds[tb->nr].cloexec = close_on_exec(fd, fdt);
		tb->nr++;
	}
	spin_unlock(&files->file_lock);
	return ret;
}

/* The link text of @file, as /proc/<pid>/fd shows it. */
static const char *file_link(struct ck_table *tb, struct file *file, int fd)
{
	char *name = d_path(&file->f_path, tb->path, PATH_MAX);

	if (IS_ERR(name))
		crfs_ck_fail(tb->ck, PTR_ERR(name), "fd %d: its name", fd);
	return name;
}

static void fill_common(struct ckpt_hdr_file *h, struct file *file, u32 f_type)
{
	umode_t mode = file_inode(file)->i_mode;

	h->f_type = f_type;
	h->f_mode = file->f_mode & (FMODE_READ | FMODE_WRITE);
	if (S_ISREG(mode) || S_ISDIR(mode) || S_ISBLK(mode))
		h->f_mode |= CK_FMODE_SEEK;
	h->f_flags = file->f_flags & ~O_CLOEXEC;
	h->f_pos = file->f_pos;
}

void crfs_ck_fill_file(struct ckpt_hdr_file *h, struct file *file, u32 f_type)
{
	fill_common(h, file, f_type);
}

/* The file at @fd of the table (fds ascend), or NULL. */
static struct file *file_at(const void *table, int fd)
{
	const struct ck_table *tb = table;
	u32 lo = 0, hi = tb->nr;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (tb->fds[mid].fd == fd)
			return tb->fds[mid].file;
		if (tb->fds[mid].fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct file *file_nth(const void *table, u32 i)
{
	const struct ck_table *tb = table;

	return i < tb->nr ? tb->fds[i].file : NULL;
}

static int write_text(struct crfs_ckpt *ck, u32 type, const char *text)
{
	size_t len = strlen(text) + 1;
	int ret;

	if (len > CRFS_MAX_STRING)
		return crfs_ck_fail(ck, -ENAMETOOLONG, "a file name of %zu bytes", len);
	ret = crfs_ck_frame(ck, type, len);
	return ret ? ret : crfs_ck_write(ck, text, len);
}

static int write_generic(struct ck_table *tb, struct file *file, int fd)
{
	struct ckpt_hdr_file h = { 0 };
	const char *name = file_link(tb, file, fd);
	int ret;

	if (IS_ERR(name))
		return PTR_ERR(name);
	fill_common(&h, file, CKPT_FILE_GENERIC);
	ret = crfs_ck_record(tb->ck, CKPT_HDR_FILE, &h, sizeof(h));
	return ret ? ret : write_text(tb->ck, CKPT_HDR_FILE_NAME, name);
}

static int write_opaque(struct ck_table *tb, struct file *file, int fd, u32 kind)
{
	struct crfs_hdr_file_opaque h = { .kind = kind };
	const char *name = file_link(tb, file, fd);
	int ret;

	if (IS_ERR(name))
		return PTR_ERR(name);
	fill_common(&h.common, file, CRFS_FILE_OPAQUE);
	h.st_mode = file_inode(file)->i_mode;
	ret = crfs_ck_record(tb->ck, CKPT_HDR_FILE, &h, sizeof(h));
	return ret ? ret : write_text(tb->ck, CKPT_HDR_STRING, name);
}

/* A file deleted while open, with its content (crfs_deleted.c). */
static int write_deleted(struct ck_table *tb, struct file *file, int fd)
{
	struct ckpt_hdr_file h = { 0 };
	const char *name = file_link(tb, file, fd);

	if (IS_ERR(name))
		return PTR_ERR(name);
	fill_common(&h, file, CRFS_FILE_DELETED);
	return crfs_ckpt_deleted(tb->ck, &h, file, fd, name);
}

/*
 * A pipe's capacity (F_GETPIPE_SZ: max_usage pages) as pipe_size_log2, and for a pipe the
 * ends that no process has open (CRFS_PIPE_NO_*); under the pipe's mutex.
 */
static void pipe_state(struct ckpt_hdr_file_pipe *h, struct pipe_inode_info *pipe,
		       bool fifo)
{
	unsigned long size = (unsigned long)pipe->max_usage << PAGE_SHIFT;

	h->pipe_size_log2 = size ? order_base_2(size) : 0;
	if (fifo)
		return;
	if (!pipe->readers)
		h->pipe_flags |= CRFS_PIPE_NO_READER;
	if (!pipe->writers)
		h->pipe_flags |= CRFS_PIPE_NO_WRITER;
}

/*
 * Copies the bytes buffered in @pipe (not consuming them) and its state into @h; their
 * number or an error.
 */
static long copy_pipe(struct ck_table *tb, struct pipe_inode_info *pipe, int fd,
		      struct ckpt_hdr_file_pipe *h, bool fifo)
{
	unsigned int tail, mask;
	size_t len = 0;
	long ret = 0;

	pipe_lock(pipe);
	pipe_state(h, pipe, fifo);
	mask = pipe->ring_size - 1;
	for (tail = pipe->tail; tail != pipe->head; tail++) {
		struct pipe_buffer *buf = &pipe->bufs[tail & mask];
		void *addr;

		if (buf->len > CRFS_MAX_PIPE_BUF - len) {
			ret = -EOPNOTSUPP;
			break;
		}
		ret = pipe_buf_confirm(pipe, buf);
		if (ret)
			break;
		addr = kmap_local_page(buf->page);
		memcpy(tb->pipe_buf + len, addr + buf->offset, buf->len);
		kunmap_local(addr);
		len += buf->len;
	}
	pipe_unlock(pipe);
	if (ret == -EOPNOTSUPP)
		return crfs_ck_fail(tb->ck, ret, "fd %d: a pipe holding more than %u bytes",
				    fd, CRFS_MAX_PIPE_BUF);
	if (ret)
		return crfs_ck_fail(tb->ck, ret, "fd %d: reading its pipe's bytes", fd);
	return len;
}

/* PIPE FILE [PIPE_BUF]; a FIFO: FIFO FILE FILE_NAME [PIPE_BUF]. */
static int write_pipe(struct ck_table *tb, struct file *file, int fd, bool fifo)
{
	struct ckpt_hdr_file_pipe h = { 0 };
	struct inode *inode = file_inode(file);
	struct pipe_inode_info *pipe = READ_ONCE(inode->i_pipe);
	const char *name = NULL;
	long len = 0;
	bool first;
	int ret;

	if (!pipe || (file->f_mode & FMODE_PATH))
		return crfs_ck_fail(tb->ck, -EOPNOTSUPP, "fd %d: a deleted FIFO opened O_PATH",
				    fd);
	if (fifo) {
		name = file_link(tb, file, fd);
		if (IS_ERR(name))
			return PTR_ERR(name);
	}
	ret = crfs_ck_object(tb->ck, inode, &h.pipe_objref);
	if (ret)
		return ret;
	first = h.pipe_objref < 0;
	if (first) {
		h.pipe_objref = -h.pipe_objref;
		len = copy_pipe(tb, pipe, fd, &h, fifo);
		if (len < 0)
			return len;
	} else {
		pipe_lock(pipe);
		pipe_state(&h, pipe, fifo);
		pipe_unlock(pipe);
	}
	fill_common(&h.common, file, fifo ? CKPT_FILE_FIFO : CKPT_FILE_PIPE);
	ret = crfs_ck_record(tb->ck, CKPT_HDR_FILE, &h, sizeof(h));
	if (!ret && fifo)
		ret = write_text(tb->ck, CKPT_HDR_FILE_NAME, name);
	if (!ret && first)
		ret = crfs_ck_frame(tb->ck, CKPT_HDR_PIPE_BUF, len);
	if (!ret && first && len)
		ret = crfs_ck_write(tb->ck, tb->pipe_buf, len);
	return ret;
}

/* The FILE object @objref of @file, of its kind, at its first fd. */
static int write_file_of(struct ck_table *tb, struct file *file, int fd, s32 objref)
{
	struct inode *inode = file_inode(file);
	umode_t mode = inode->i_mode;
	int ret;

	if (crfs_ckpt_is_deleted(file))
		return write_deleted(tb, file, fd);
	if ((file->f_mode & FMODE_PATH) && inode->i_sb->s_magic != PIPEFS_MAGIC &&
	    inode->i_sb->s_magic != SOCKFS_MAGIC && !d_unlinked(file->f_path.dentry))
		return write_generic(tb, file, fd);	/* O_PATH: any kind, by name */
	if (S_ISFIFO(mode))
		return write_pipe(tb, file, fd, inode->i_sb->s_magic != PIPEFS_MAGIC);
	if (S_ISSOCK(mode)) {
		struct ckpt_hdr_file h = { 0 };

		fill_common(&h, file, CRFS_FILE_UNIX);
		ret = crfs_ckpt_unix(tb->ck, &h, file, fd);	/* crfs_socket.c */
		if (ret <= 0)
			return ret;
		return write_opaque(tb, file, fd, CRFS_OPAQUE_SOCKET);
	}
	if ((S_ISREG(mode) || S_ISDIR(mode)) &&
	    (!inode->i_nlink || d_unlinked(file->f_path.dentry)))
		return write_opaque(tb, file, fd, CRFS_OPAQUE_DELETED);
	if (inode->i_sb->s_magic == ANON_INODE_FS_MAGIC) {
		struct crfs_ck_view view = { .table = tb, .at = file_at, .nth = file_nth };

		ret = crfs_ckpt_anon(tb->ck, &tb->anon, file, fd, objref, &view);
		if (ret)
			return ret < 0 ? ret : 0;
		return write_opaque(tb, file, fd, CRFS_OPAQUE_ANON);
	}
	if (S_ISREG(mode) || S_ISDIR(mode) || S_ISCHR(mode) || S_ISBLK(mode))
		return write_generic(tb, file, fd);
	return write_opaque(tb, file, fd, CRFS_OPAQUE_OTHER);
}

/* [the FILE object at its first fd] FILE_DESC */
static int write_fd(struct ck_table *tb, const struct ck_fd *cf)
{
	struct ckpt_hdr_file_desc d = {
		.fd_descriptor = cf->fd,
		.fd_close_on_exec = cf->cloexec,
	};
	int ret;

	/* bit 0: apart from the objects of the VMAs' struct files (with a FILE_ID) */
	ret = crfs_ck_object(tb->ck, (void *)((unsigned long)cf->file | 1),
			     &d.fd_objref);
	if (!ret && d.fd_objref < 0) {
		d.fd_objref = -d.fd_objref;
		ret = crfs_ck_objref(tb->ck, CKPT_OBJ_FILE, d.fd_objref);
		if (!ret)
			ret = write_file_of(tb, cf->file, cf->fd, d.fd_objref);
		if (!ret)
			ret = crfs_fown_checkpoint(tb->ck, cf->file, cf->fd);
	}
	return ret ? ret : crfs_ck_record(tb->ck, CKPT_HDR_FILE_DESC, &d, sizeof(d));
}

static int write_table(struct ck_table *tb, s32 objref)
{
	struct ckpt_hdr_file_table h = { .fdt_nfds = tb->nr };
	u32 i;
	int ret;

	ret = crfs_ck_objref(tb->ck, CKPT_OBJ_FILE_TABLE, objref);
	if (!ret)
		ret = crfs_ck_record(tb->ck, CKPT_HDR_FILE_TABLE, &h, sizeof(h));
	for (i = 0; !ret && i < tb->nr; i++) {
		ret = write_fd(tb, &tb->fds[i]);
		cond_resched();
	}
	return ret ? ret : crfs_ckpt_epoll_items(tb->ck, tb->anon);
}

static int alloc_table(struct ck_table *tb)
{
	tb->fds = kvmalloc_array(CRFS_MAX_FDS, sizeof(*tb->fds), GFP_KERNEL);
	tb->path = kmalloc(PATH_MAX, GFP_KERNEL);
	tb->pipe_buf = kvmalloc(CRFS_MAX_PIPE_BUF, GFP_KERNEL);
	return tb->fds && tb->path && tb->pipe_buf ? 0 : -ENOMEM;
}

static void free_table(struct ck_table *tb)
{
	while (tb->nr)
		fput(tb->fds[--tb->nr].file);
	kvfree(tb->fds);
	kfree(tb->path);
	kvfree(tb->pipe_buf);
	crfs_ckpt_anon_free(tb->anon);
}

/* The file table of @t at its first task (else its objref only): TASK_OBJS.files_objref. */
int crfs_ckpt_files(struct crfs_ckpt *ck, struct task_struct *t, pid_t vpid,
		    s32 *objref)
{
	struct ck_table tb = { .ck = ck };
	struct files_struct *files;
	int ret;

	task_lock(t);
	files = t->files;
	task_unlock(t);
	if (!files)
		return crfs_ck_fail(ck, -ESRCH, "pid %d has no file table", vpid);
	ret = crfs_ck_object(ck, files, objref);
	if (ret || *objref > 0)
		return ret;
	*objref = -*objref;
	ret = alloc_table(&tb);
	if (!ret) {
		task_lock(t);
		ret = t->files == files ? snapshot_fds(&tb, files) : -ESRCH;
		task_unlock(t);
		if (ret)
			ret = crfs_ck_fail(ck, ret, "pid %d: its file table %s", vpid,
					   ret == -EMFILE ? "has too many fds" : "changed");
	}
	if (!ret)
		ret = write_table(&tb, *objref);
	free_table(&tb);
	return ret;
}
