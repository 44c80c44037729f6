/* SPDX-License-Identifier: MIT */
/*
 * obj_cgroup: a memory-accounting group with an optional byte limit.
 * Charging is lock-free (one CAS loop) and therefore works in any context.
 */
#ifndef BPFMEM_KERNEL_MEMCG_H
#define BPFMEM_KERNEL_MEMCG_H

#include <stddef.h>
#include "compiler.h"

struct bpfmem_objcg {
	_Atomic size_t usage;	/* bytes charged now */
	size_t limit;		/* 0: unlimited; immutable */
	_Atomic long refcnt;
};

/* 0, or -ENOMEM when the charge would exceed the limit.  NULL cg: 0. */
int obj_cgroup_charge(struct bpfmem_objcg *cg, size_t size) __hidden;
void obj_cgroup_uncharge(struct bpfmem_objcg *cg, size_t size) __hidden;
struct bpfmem_objcg *obj_cgroup_get(struct bpfmem_objcg *cg) __hidden;
/* The calling thread's current group (bpfmem_objcg_set_current), referenced. */
struct bpfmem_objcg *get_obj_cgroup_from_current(void) __hidden;
#define obj_cgroup_put bpfmem_objcg_put

#endif /* BPFMEM_KERNEL_MEMCG_H */
