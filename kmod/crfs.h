/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared by the crfs module's source files.
 *
 * The module works in three steps, in this order, on every image:
 *   copy-in:  the image's metadata is read from the file into kernel memory (a plan);
 *   validate: every record, length, count and address is checked while it is copied in;
 *   act:      the restore uses only the plan (page bytes are read from the file then);
 *             see crfs_restore.c for its point of no return.
 */
#ifndef CRFS_H
#define CRFS_H

#include <linux/bits.h>
#include <linux/fs.h>
#include <linux/sched.h>
#include <linux/types.h>
#include <linux/xarray.h>

#include "crfs_image.h"
#include "crfs_ioctl.h"
#include "crfs_sig.h"
#include "crfs_task_state.h"

/* Bounds on what an image may make the module allocate or walk. */
#define CRFS_MAX_IMAGE_SIZE	BIT_ULL(40)	/* bytes */
#define CRFS_MAX_TASKS		1024
#define CRFS_MAX_PID_DEPTH	32		/* MAX_PID_NS_LEVEL */
#define CRFS_MAX_VMAS		65530		/* DEFAULT_MAX_MAP_COUNT, per mm */
#define CRFS_MAX_TOTAL_VMAS	BIT(20)	/* all mms of an image */
#define CRFS_MAX_PAGES		BIT(22)	/* dumped pages: 16 GiB */
#define CRFS_MAX_OBJECTS	BIT(16)
#define CRFS_MAX_OBJ_DEPTH	4		/* nesting: MM > FILE > CRED > GROUPINFO */
#define CRFS_MAX_STRING		4096		/* STRING, FILE_NAME, uts BUFFERs */
#define CRFS_MAX_AUXV_BYTES	4096
#define CRFS_LDT_ENTRIES	8192
#define CRFS_MAX_FDS		4096		/* FILE_DESCs of one file table */
#define CRFS_MAX_FD_NUMBER	1048576		/* fd numbers: below NR_OPEN's default */
#define CRFS_MAX_PIPE_BUF	1048576		/* PIPE_BUF bytes: default pipe-max-size */
#define CRFS_PIPE_DEF_LOG2	16		/* a pipe's default capacity: 64 KiB */
#define CRFS_MAX_DELETED	(64 << 20)	/* bytes of a file deleted while open */

/* ---------------------------------------------------------------- crfs_image.c */

/* An image file being read: every read is bounded by the size taken at open. */
struct crfs_image {
	struct file *file;
	loff_t size;
	loff_t pos;		/* offset of the next record */
	/* where and why the image was rejected */
	loff_t err_offset;
	u32 err_type;
	char err_msg[CRFS_ERRMSG_LEN];
};

/* One record's frame, as read and bounds-checked by crfs_image_next(). */
struct crfs_rec {
	loff_t pos;		/* offset of its struct ckpt_hdr */
	u32 type;
	u32 len;		/* whole record, header included */
};

int crfs_image_open(struct crfs_image *img, int fd);
void crfs_image_close(struct crfs_image *img);
int crfs_image_read(struct crfs_image *img, loff_t pos, void *buf, size_t len);
int crfs_image_read_user(struct crfs_image *img, loff_t pos, void __user *ubuf,
			 size_t len);
int crfs_image_peek(struct crfs_image *img, struct crfs_rec *rec);
int crfs_image_optional(struct crfs_image *img, u32 type, struct crfs_rec *rec,
			void *buf, size_t size);
int crfs_image_next(struct crfs_image *img, struct crfs_rec *rec);
int crfs_image_body(struct crfs_image *img, const struct crfs_rec *rec,
		    void *buf, size_t size);
__printf(3, 4)
int crfs_image_fail(struct crfs_image *img, const struct crfs_rec *rec,
		    const char *fmt, ...);
const char *crfs_rec_name(u32 type);
bool crfs_rec_known(u32 type);

/* ---------------------------------------------------------------- crfs_restart.c */

/* Adjacent pages stored one after the other in the image. */
struct crfs_run {
	u64 addr;		/* first page's vaddr (page index for SHM_ANON) */
	loff_t pos;		/* file offset of its bytes */
	u32 nr_pages;
};

/* A CKPT_OBJ_INODE: a pipe or FIFO, its bytes from the PIPE_BUF after its first end. */
struct crfs_pipe {
	loff_t buf_pos;		/* file offset of the bytes */
	u32 buf_len;
	u32 nr_tables;		/* file tables (processes) holding one of its ends */
	const void *last_table;	/* the last one counted */
	bool reader;		/* a PIPE: some table of the image has its read end */
	bool writer;		/* ... its write end */
	u16 flags;		/* CRFS_PIPE_*: ends no process had open */
	u8 size_log2;		/* capacity 1 << it bytes; 0: not known */
};

/* The most bytes @p may hold: its capacity if known, at most CRFS_MAX_PIPE_BUF. */
static inline u32 crfs_pipe_capacity(const struct crfs_pipe *p)
{
	if (!p->size_log2 || 1U << p->size_log2 > CRFS_MAX_PIPE_BUF)
		return CRFS_MAX_PIPE_BUF;
	return 1U << p->size_log2;
}

struct crfs_file {
	struct ckpt_hdr_file h;
	char *name;		/* generic files and FIFOs: NUL-terminated path */
	s32 pipe_objref;	/* pipes and FIFOs */
	struct crfs_pipe *pipe;
	u32 opaque_kind;	/* CRFS_FILE_OPAQUE: CRFS_OPAQUE_* */
	struct crfs_hdr_file_owner owner;	/* CRFS_HDR_FILE_OWNER, if has_owner */
	bool has_owner;
	u32 nr_tables;		/* file tables (processes) holding it */
	const void *last_table;
	struct crfs_hdr_file_id id;	/* CRFS_HDR_FILE_ID, if has_id */
	bool has_id;
	struct crfs_deleted *deleted;	/* CRFS_FILE_DELETED (crfs_deleted.c) */
	struct crfs_hdr_file_unix *unix_h;	/* CRFS_FILE_UNIX (crfs_socket.c) */
	/* a deleted regular file with a CRFS_FILE_ID: the files of its inode share one */
	struct crfs_file *inode_owner;	/* the inode's first file (itself for that one) */
	struct crfs_file *inode_next;	/* owners: the next owner of the same ino */
	u32 inode_id;			/* owners: the inode's key, from 1 */
	u32 inode_members;		/* owners: files of the inode */
	u32 inode_tables;		/* owners: file tables holding one of them */
	const void *inode_last_table;
};

/* A FILE_DESC: fd @fd is the FILE object @objref. */
struct crfs_fd {
	s32 fd;
	bool cloexec;
	s32 objref;
	struct crfs_file *file;
};

/* A FILE_TABLE object: its descriptors, sorted by fd, each fd once. */
struct crfs_fdtable {
	u32 nr;
	struct crfs_fd fds[];
};

struct crfs_vma {
	struct ckpt_hdr_vma h;
	struct crfs_file *file;	/* vma_objref's file, or NULL */
	struct crfs_run *runs;
	u32 nr_runs;
	u32 max_runs;
};

struct crfs_mm {
	struct ckpt_hdr_mm h;
	struct ckpt_hdr_mm_context context;
	u64 *auxv;		/* at_vector_size words, AT_NULL-terminated */
	struct crfs_vma *vmas;	/* h.map_count of them, ascending */
	const struct crfs_file *exe;	/* exe_objref's generic FILE, or NULL */
};

/* A GROUPINFO: the supplementary groups, as the image has them (not sorted). */
struct crfs_groups {
	u32 ngroups;
	u32 gids[];
};

/* A CRED; groups is its GROUPINFO object's, or NULL. */
struct crfs_cred {
	struct ckpt_hdr_cred h;
	struct crfs_groups *groups;
};

struct crfs_object {
	u32 objtype;
	bool ready;		/* its records have been read */
	union {
		struct crfs_mm *mm;
		struct crfs_file *file;
		struct crfs_cred *cred;
		struct crfs_groups *groups;
		struct crfs_fdtable *fdt;
		struct crfs_pipe *pipe;
		struct ckpt_hdr_sighand *sighand;
		struct crfs_signal *signal;
		struct crfs_fs *fs;
	};
};

#define CRFS_PART_THREAD	BIT(0)
#define CRFS_PART_CPU		BIT(1)
#define CRFS_PART_TASK_OBJS	BIT(2)
#define CRFS_PART_CREDS		BIT(3)

struct crfs_task {
	struct ckpt_pids pids;
	struct ckpt_hdr_task h;
	char comm[TASK_COMM_LEN];
	unsigned int parts;	/* CRFS_PART_* records met */
	struct ckpt_hdr_thread thread;
	struct ckpt_hdr_cpu cpu;
	loff_t fpu_pos;		/* xstate_size bytes when cpu.used_math */
	struct crfs_mm *mm;
	struct crfs_cred *cred;		/* TASK_CREDS: real, effective; or NULL */
	struct crfs_cred *ecred;
	struct crfs_fdtable *files;	/* TASK_OBJS files_objref's, or NULL */
	s32 files_objref;
	struct crfs_task_sig sig;	/* signals, limits, fs_struct */
	struct crfs_task_state ts;	/* oom_score_adj, rseq (crfs_task_state.c) */
};

/* Everything the restore needs, copied in and validated. */
struct crfs_plan {
	struct ckpt_hdr_header header;
	struct ckpt_hdr_header_arch arch;
	struct crfs_task *tasks;
	u32 nr_tasks;
	struct xarray objects;	/* objref -> struct crfs_object */
	struct xarray shm;	/* ino_objref -> xa_mk_value(pages of the inode) */
	struct xarray inodes;	/* deleted files: ino -> the first owner (crfs_deleted.c) */
	u32 nr_inodes;
	u32 nr_objects;
	u32 nr_vmas;
	u64 nr_pages;
	u64 *vaddrs;		/* scratch: one PGARR's vaddr array */
	u32 flags;		/* crfs_image_args.flags */
	struct crfs_handed *handed;	/* RESTART_FILES: the files handed in, or NULL */
};

/* Reading the image into the plan: the helpers crfs_files.c shares. */
struct crfs_ctx {
	struct crfs_plan *plan;
	struct crfs_image *img;
};

int crfs_next_of(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type,
		 int depth);
int crfs_expect(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type);
bool crfs_fits(struct crfs_ctx *ctx, u64 count, u64 size);
struct crfs_object *crfs_lookup(struct crfs_ctx *ctx, s32 objref, u32 objtype);

void crfs_plan_init(struct crfs_plan *plan);
void crfs_plan_free(struct crfs_plan *plan);
int crfs_plan_load(struct crfs_plan *plan, struct crfs_image *img);
long crfs_ioctl_image(struct crfs_image_args __user *uargs, bool restart);
long crfs_image_ioctl(struct crfs_image_args __user *uargs, bool restart,
		      struct crfs_handed *handed);

/* ---------------------------------------------------------------- crfs_restore.c */

int crfs_restore(struct crfs_plan *plan, struct crfs_image *img, u32 index,
		 bool *done);

/* ---------------------------------------------------------------- crfs_lazy.c */

struct crfs_lazy;

bool crfs_lazy_vma(const struct crfs_vma *vma);
struct crfs_lazy *crfs_lazy_new(const struct crfs_mm *mm);
void crfs_lazy_publish(struct crfs_lazy *l);
int crfs_lazy_wait(struct crfs_lazy *l);
void crfs_lazy_put(struct crfs_lazy *l);
void crfs_lazy_abandon(struct crfs_lazy *l);
long crfs_ioctl_lazy(struct file *dev, struct crfs_lazy_args __user *uargs);
void crfs_lazy_release(struct file *dev);

/* ---------------------------------------------------------------- crfs_files.c */

struct crfs_files;

int crfs_load_file(struct crfs_ctx *ctx, struct crfs_object *obj, int depth);
int crfs_load_file_table(struct crfs_ctx *ctx, struct crfs_object *obj,
			 int depth);
int crfs_load_task_files(struct crfs_ctx *ctx, struct crfs_task *task,
			 const struct crfs_rec *rec, s32 files_objref);
void crfs_free_file_object(struct crfs_object *obj);
int crfs_files_prepare(struct crfs_plan *plan, struct crfs_image *img,
		       u32 index, const struct cred *cred,
		       struct crfs_files **out);
void crfs_files_install(struct crfs_files *files);
void crfs_files_free(struct crfs_files *files);
void crfs_files_exit(void);

#define CRFS_SHARED_SHM	BIT_ULL(32)	/* key bit: a shared anonymous segment */
#define CRFS_SHARED_INODE BIT_ULL(33)	/* key bit: a deleted file's inode */
typedef struct file *(*crfs_maker)(void *arg);
struct file *crfs_shared_file(struct crfs_image *img, u64 key, u32 users,
			      crfs_maker make, void *arg);

/* ---------------------------------------------------------------- crfs_socket.c */

int crfs_unix_load(struct crfs_ctx *ctx, struct crfs_file *file,
		   const struct crfs_rec *rec);
bool crfs_unix_outside(struct crfs_plan *plan, const struct crfs_file *file);
int crfs_ckpt_unix(struct crfs_ckpt *ck, const struct ckpt_hdr_file *common,
		   struct file *file, int fd);
int crfs_unix_check(struct crfs_plan *plan, struct crfs_image *img, struct file *file,
		    const struct crfs_file *cf, int fd);

/* ---------------------------------------------------------------- crfs_anonfd.c */

struct crfs_handed;

bool crfs_anon_kind(u32 f_type);
int crfs_anon_load(struct crfs_ctx *ctx, const struct crfs_file *file,
		   const struct crfs_rec *rec);
long crfs_ioctl_restart_files(struct crfs_restart_args __user *uargs);
void crfs_handed_free(struct crfs_handed *handed);
int crfs_handed_check(struct crfs_plan *plan, struct crfs_image *img);
struct file *crfs_handed_file(const struct crfs_plan *plan, s32 objref);

/* ---------------------------------------------------------------- crfs_group.c */

struct crfs_group;

int crfs_group_join(const struct file *image, u32 nr_tasks, u32 index,
		    u32 nr_threads, struct crfs_group **out);
void crfs_group_leave(struct crfs_group *g);
void crfs_group_cancel(struct crfs_group *g);
int crfs_group_gather(struct crfs_group *g);
void crfs_group_restored(struct crfs_group *g, bool ok);
int crfs_group_arrive(struct crfs_group *g, bool *committed);
bool crfs_group_masked(struct crfs_group *g);
void crfs_group_settle(struct crfs_group *g);
void crfs_group_wait_settled(struct crfs_group *g);

/* ---------------------------------------------------------------- crfs_fown.c */

int crfs_fown_load(struct crfs_ctx *ctx, struct crfs_file *f);
int crfs_fown_prepare(const struct crfs_plan *plan, struct crfs_image *img,
		      u32 index, const struct crfs_fd *cfd, struct file *file);
struct crfs_ckpt;
int crfs_fown_checkpoint(struct crfs_ckpt *ck, struct file *file, int fd);

/* ---------------------------------------------------------------- crfs_checkpoint.c */

long crfs_ioctl_checkpoint(struct crfs_checkpoint_args __user *uargs);
long crfs_ioctl_snapshot(struct crfs_snapshot_args __user *uargs);

/* The image writer, for the records written in other files (crfs_ckpt_creds.c). */
struct crfs_ckpt;
int crfs_ck_write(struct crfs_ckpt *ck, const void *buf, size_t len);
int crfs_ck_record(struct crfs_ckpt *ck, u32 type, void *rec, size_t size);
struct sighand_struct *crfs_ck_lock_sighand(struct task_struct *t, unsigned long *flags);
int crfs_ck_objref(struct crfs_ckpt *ck, u32 objtype, s32 objref);
int crfs_ck_object(struct crfs_ckpt *ck, void *key, s32 *objref);
int crfs_ck_frame(struct crfs_ckpt *ck, u32 type, size_t len);
__printf(3, 4)
int crfs_ck_fail(struct crfs_ckpt *ck, int err, const char *fmt, ...);

/* ---------------------------------------------------------------- crfs_ckpt_creds.c */

int crfs_ckpt_creds(struct crfs_ckpt *ck, struct task_struct *t);

/* ---------------------------------------------------------------- crfs_ckpt_files.c */

int crfs_ckpt_files(struct crfs_ckpt *ck, struct task_struct *t, pid_t vpid,
		    s32 *objref);
void crfs_ck_fill_file(struct ckpt_hdr_file *h, struct file *file, u32 f_type);

/* ---------------------------------------------------------------- crfs_ckpt_anon.c */

struct crfs_ck_anon;

/* The file table being written, as crfs_ckpt_anon.c looks into it. */
struct crfs_ck_view {
	const void *table;
	struct file *(*at)(const void *table, int fd);	/* the file at @fd, or NULL */
	struct file *(*nth)(const void *table, u32 i);	/* its i-th fd's, or NULL */
};

int crfs_ckpt_anon(struct crfs_ckpt *ck, struct crfs_ck_anon **anp,
		   struct file *file, int fd, s32 objref,
		   const struct crfs_ck_view *view);
int crfs_ckpt_epoll_items(struct crfs_ckpt *ck, struct crfs_ck_anon *an);
void crfs_ckpt_anon_free(struct crfs_ck_anon *an);

/* ---------------------------------------------------------------- crfs_deleted.c */

struct crfs_deleted;

int crfs_deleted_load(struct crfs_ctx *ctx, struct crfs_file *file,
		      const struct crfs_rec *rec);
void crfs_deleted_free(struct crfs_file *file);
struct file *crfs_deleted_inode(struct crfs_image *img, const struct crfs_file *cf,
				int fd);
struct file *crfs_deleted_reopen(const struct crfs_file *cf, struct file *inode_file);
struct file *crfs_deleted_open(struct crfs_image *img, const struct crfs_file *cf,
			       int fd);
int crfs_deleted_dir(const char *name, struct path *out);
void crfs_deleted_forget(void);
void crfs_deleted_exit(void);
bool crfs_ckpt_is_deleted(struct file *file);
int crfs_ckpt_deleted(struct crfs_ckpt *ck, struct ckpt_hdr_file *common,
		      struct file *file, int fd, const char *link);

/* ---------------------------------------------------------------- crfs_nsfile.c */

struct file *crfs_ns_open(struct crfs_image *img, const char *name, int flags,
			  int fd);

/* ---------------------------------------------------------------- crfs_fileid.c */

int crfs_file_id_load(struct crfs_image *img, struct crfs_file *f);
int crfs_file_id_check(struct crfs_image *img, const struct crfs_file *f,
		       struct file *file);
int crfs_file_id_of(struct file *file, struct crfs_hdr_file_id *id);
int crfs_file_stat_id(struct file *file, struct crfs_hdr_file_id *id);

/* ---------------------------------------------------------------- crfs_exe.c */

struct file *crfs_open_regular(const char *name, int flags);
struct file *crfs_exe_prepare(struct crfs_image *img, const struct crfs_file *f,
			      bool privileged);
void crfs_exe_release(struct file *exe);
void crfs_exe_install(struct file *exe);

#endif /* CRFS_H */
