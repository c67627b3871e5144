/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The state of a task that is neither memory, registers, files nor signals
 * (crfs_task_state.c): oom_score_adj, the rseq registration, a stopped task.
 */
#ifndef CRFS_TASK_STATE_H
#define CRFS_TASK_STATE_H

#include <linux/types.h>

#include "crfs_image.h"

struct crfs_plan;
struct crfs_image;
struct crfs_rec;
struct crfs_task;
struct crfs_ckpt;
struct task_struct;

#define CRFS_TS_OOM	BIT(0)	/* CRFS_HDR_OOM_SCORE_ADJ met */
#define CRFS_TS_RSEQ	BIT(1)	/* CRFS_HDR_RSEQ met */
#define CRFS_TS_SECCOMP	BIT(2)	/* CRFS_HDR_SECCOMP met */
#define CRFS_TS_MISC	BIT(3)	/* CRFS_HDR_TASK_MISC met (crfs_task_misc.c) */

struct crfs_task_state {
	unsigned int has;	/* CRFS_TS_* */
	s32 oom_score_adj;
	u32 seccomp;		/* SECCOMP_MODE_STRICT or 0 */
	struct crfs_hdr_rseq rseq;
	struct crfs_hdr_task_misc misc;
};

bool crfs_ts_record(u32 type);
int crfs_ts_load_record(struct crfs_image *img, struct crfs_task *task,
			const struct crfs_rec *rec);
int crfs_ts_prepare(const struct crfs_task *task, bool process, char *err_msg);
void crfs_ts_act_process(const struct crfs_task *task);
void crfs_ts_act_thread(const struct crfs_task *task);
void crfs_ts_act_seccomp(const struct crfs_task *task);
void crfs_ts_act_last(const struct crfs_plan *plan, u32 index);
u32 crfs_ts_ckpt_state(struct task_struct *t);
int crfs_ts_checkpoint(struct crfs_ckpt *ck, struct task_struct *t, bool new_group);

int crfs_tm_load(struct crfs_image *img, struct crfs_task *task, const struct crfs_rec *rec);
int crfs_tm_prepare(const struct crfs_task *task, char *err_msg);
void crfs_tm_act_thread(const struct crfs_task *task);
void crfs_tm_act_last(const struct crfs_plan *plan, u32 index);
int crfs_tm_checkpoint(struct crfs_ckpt *ck, struct task_struct *t);
struct signal_struct;
struct ckpt_hdr_signal;
void crfs_itimers_fill(struct signal_struct *sig, struct ckpt_hdr_signal *h);
const char *crfs_itimers_check(const struct ckpt_hdr_signal *h);

struct crfs_ck_zombies;
struct crfs_ck_zombies *crfs_ts_zombies_alloc(void);
void crfs_ts_zombies_free(struct crfs_ck_zombies *zs);
u32 crfs_ts_nr_zombies(const struct crfs_ck_zombies *zs);
int crfs_ts_add_zombie(struct crfs_ckpt *ck, struct crfs_ck_zombies *zs,
		       struct task_struct *c, u32 used);
int crfs_ts_write_zombie_pids(struct crfs_ckpt *ck, const struct crfs_ck_zombies *zs);
int crfs_ts_write_zombies(struct crfs_ckpt *ck, const struct crfs_ck_zombies *zs);

#endif /* CRFS_TASK_STATE_H */
