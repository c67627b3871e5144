// SPDX-License-Identifier: GPL-2.0
/*
 * CHECKPOINT: a task's credentials, as crfs/model/ckpt_dump.py writes them (linux-cr v21
 * records), so that RESTART gives a module checkpoint its own credentials back:
 *
 *   OBJREF{CRED} OBJREF{GROUPINFO} GROUPINFO
 *     [OBJREF{USER} [OBJREF{USER_NS} USER_NS{creator 0}] USER] CRED	(once per cred)
 *   TASK_CREDS{cred_ref, ecred_ref}
 *
 * after the task's CPU records. Objects are keyed by their kernel pointers: threads that
 * share a cred, a group_info or a user_struct write it once. Ids are written as the
 * caller's user namespace sees them (what /proc/<pid>/status shows it), as RESTART reads
 * them. The task is in a ptrace stop, so its creds do not change meanwhile; they are
 * read under RCU and pinned with get_cred() for the writes.
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/mm.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/uidgid.h>
#include <linux/user_namespace.h>

#include "crfs.h"

/* GROUPINFO: ngroups, the gids, 4 zero bytes (len CKPT_GROUPINFO_SIZE + 4 * ngroups) */
static int write_groupinfo(struct crfs_ckpt *ck, struct group_info *gi, s32 *ref)
{
	struct ckpt_hdr_groupinfo h = { .ngroups = gi->ngroups };
	u32 zero = 0, gid;
	int i, ret;

	ret = crfs_ck_object(ck, gi, ref);
	if (ret || *ref > 0)
		return ret;
	*ref = -*ref;
	ret = crfs_ck_objref(ck, CKPT_OBJ_GROUPINFO, *ref);
	h.h.type = CKPT_HDR_GROUPINFO;
	h.h.len = CKPT_GROUPINFO_SIZE + gi->ngroups * sizeof(u32);
	if (!ret)
		ret = crfs_ck_write(ck, &h, sizeof(h));
	for (i = 0; !ret && i < gi->ngroups; i++) {
		gid = from_kgid_munged(current_user_ns(), gi->gid[i]);
		ret = crfs_ck_write(ck, &gid, sizeof(gid));
	}
	return ret ? ret : crfs_ck_write(ck, &zero, sizeof(zero));
}

/* USER of @uid in the image's one user namespace (USER_NS written with the first USER) */
static int write_user(struct crfs_ckpt *ck, const struct cred *cred, s32 *ref)
{
	struct ckpt_hdr_user_struct u = {
		.uid = from_kuid_munged(current_user_ns(), cred->user->uid),
	};
	struct ckpt_hdr_user_ns ns = { .creator_ref = 0 };
	int ret;

	ret = crfs_ck_object(ck, cred->user, ref);
	if (ret || *ref > 0)
		return ret;
	*ref = -*ref;
	ret = crfs_ck_objref(ck, CKPT_OBJ_USER, *ref);
	if (!ret)
		ret = crfs_ck_object(ck, current_user_ns(), &u.userns_ref);
	if (!ret && u.userns_ref < 0) {
		u.userns_ref = -u.userns_ref;
		ret = crfs_ck_objref(ck, CKPT_OBJ_USER_NS, u.userns_ref);
		if (!ret)
			ret = crfs_ck_record(ck, CKPT_HDR_USER_NS, &ns, sizeof(ns));
	}
	return ret ? ret : crfs_ck_record(ck, CKPT_HDR_USER, &u, sizeof(u));
}

static void fill_caps(struct ckpt_capabilities *c, const struct cred *cred)
{
	c->cap_i_0 = cred->cap_inheritable.cap[0];
	c->cap_i_1 = cred->cap_inheritable.cap[1];
	c->cap_p_0 = cred->cap_permitted.cap[0];
	c->cap_p_1 = cred->cap_permitted.cap[1];
	c->cap_e_0 = cred->cap_effective.cap[0];
	c->cap_e_1 = cred->cap_effective.cap[1];
	c->cap_b_0 = cred->cap_bset.cap[0];
	c->cap_b_1 = cred->cap_bset.cap[1];
	c->securebits = cred->securebits;
}

static void fill_ids(struct ckpt_hdr_cred *h, const struct cred *cred)
{
	struct user_namespace *ns = current_user_ns();

	h->uid = from_kuid_munged(ns, cred->uid);
	h->suid = from_kuid_munged(ns, cred->suid);
	h->euid = from_kuid_munged(ns, cred->euid);
	h->fsuid = from_kuid_munged(ns, cred->fsuid);
	h->gid = from_kgid_munged(ns, cred->gid);
	h->sgid = from_kgid_munged(ns, cred->sgid);
	h->egid = from_kgid_munged(ns, cred->egid);
	h->fsgid = from_kgid_munged(ns, cred->fsgid);
}

/* OBJREF{CRED} GROUPINFO and USER objects, then CRED; once per struct cred */
static int write_cred(struct crfs_ckpt *ck, const struct cred *cred, s32 *ref)
{
	struct ckpt_hdr_cred h = { 0 };
	int ret;

	ret = crfs_ck_object(ck, (void *)cred, ref);
	if (ret || *ref > 0)
		return ret;
	*ref = -*ref;
	ret = crfs_ck_objref(ck, CKPT_OBJ_CRED, *ref);
	if (!ret)
		ret = write_groupinfo(ck, cred->group_info, &h.groupinfo_ref);
	if (!ret)
		ret = write_user(ck, cred, &h.user_ref);
	if (ret)
		return ret;
	fill_ids(&h, cred);
	fill_caps(&h.cap_s, cred);
	return crfs_ck_record(ck, CKPT_HDR_CRED, &h, sizeof(h));
}

/* The CRED objects of @t's real and effective credentials, then TASK_CREDS. */
int crfs_ckpt_creds(struct crfs_ckpt *ck, struct task_struct *t)
{
	struct ckpt_hdr_task_creds tc = { 0 };
	const struct cred *real, *eff;
	int ret;

	rcu_read_lock();
	real = get_cred(rcu_dereference(t->real_cred));
	eff = get_cred(rcu_dereference(t->cred));
	rcu_read_unlock();
	ret = write_cred(ck, real, &tc.cred_ref);
	if (!ret)
		ret = write_cred(ck, eff, &tc.ecred_ref);
	if (!ret)
		ret = crfs_ck_record(ck, CKPT_HDR_TASK_CREDS, &tc, sizeof(tc));
	put_cred(eff);
	put_cred(real);
	return ret;
}
