/* SPDX-License-Identifier: MIT */
/* Memory-accounting groups: charge, uncharge, limit, reference counting. */
#include <errno.h>
#include <stdlib.h>

#include <bpfmem.h>
#include "bug.h"
#include "memcg.h"

static __tls_ie struct bpfmem_objcg *current_objcg;

int obj_cgroup_charge(struct bpfmem_objcg *cg, size_t size)
{
	size_t old;

	if (!cg)
		return 0;
	old = atomic_load_explicit(&cg->usage, memory_order_relaxed);
	do {
		if (cg->limit && (old + size > cg->limit || old + size < old))
			return -ENOMEM;
	} while (!atomic_compare_exchange_weak_explicit(&cg->usage, &old, old + size,
							memory_order_relaxed,
							memory_order_relaxed));
	return 0;
}

void obj_cgroup_uncharge(struct bpfmem_objcg *cg, size_t size)
{
	if (!cg)
		return;
	size_t old = atomic_fetch_sub_explicit(&cg->usage, size, memory_order_relaxed);

	WARN_ON_ONCE(old < size);
}

struct bpfmem_objcg *obj_cgroup_get(struct bpfmem_objcg *cg)
{
	if (cg)
		atomic_fetch_add_explicit(&cg->refcnt, 1, memory_order_relaxed);
	return cg;
}

struct bpfmem_objcg *get_obj_cgroup_from_current(void)
{
	return obj_cgroup_get(current_objcg);
}

__public struct bpfmem_objcg *bpfmem_objcg_create(size_t limit_bytes)
{
	struct bpfmem_objcg *cg = calloc(1, sizeof(*cg));

	if (!cg)
		return NULL;
	cg->limit = limit_bytes;
	atomic_init(&cg->refcnt, 1);
	return cg;
}

__public void bpfmem_objcg_put(struct bpfmem_objcg *cg)
{
	if (!cg)
		return;
	if (atomic_fetch_sub_explicit(&cg->refcnt, 1, memory_order_acq_rel) == 1) {
		WARN_ON_ONCE(atomic_load(&cg->usage) != 0);
		free(cg);
	}
}

__public size_t bpfmem_objcg_usage(const struct bpfmem_objcg *cg)
{
	return cg ? atomic_load_explicit(&cg->usage, memory_order_relaxed) : 0;
}

__public struct bpfmem_objcg *bpfmem_objcg_set_current(struct bpfmem_objcg *cg)
{
	struct bpfmem_objcg *old = current_objcg;

	current_objcg = cg;
	return old;
}
