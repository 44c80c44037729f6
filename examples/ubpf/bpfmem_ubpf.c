/* SPDX-License-Identifier: MIT */
/* bpf_obj_new / bpf_obj_drop and the bounds check for ubpf hosts: see bpfmem_ubpf.h. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "bpfmem_ubpf.h"

static struct bpf_mem_alloc global_ma;
/* published by init after global_ma is set up; helpers read it */
static struct bpf_mem_alloc *_Atomic global;

int bpfmem_ubpf_init(void)
{
	int err = bpf_mem_alloc_init(&global_ma, 0, false);

	if (!err)
		atomic_store_explicit(&global, &global_ma, memory_order_release);
	return err;
}

void bpfmem_ubpf_exit(void)
{
	atomic_store_explicit(&global, NULL, memory_order_relaxed);
	bpf_mem_alloc_destroy(&global_ma);
}

struct bpf_mem_alloc *bpfmem_ubpf_ma(void)
{
	return atomic_load_explicit(&global, memory_order_acquire);
}

uint64_t bpfmem_ubpf_obj_new(uint64_t size, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
			     void *cookie)
{
	struct bpf_mem_alloc *ma = bpfmem_ubpf_ma();
	void *obj;

	(void)r2, (void)r3, (void)r4, (void)r5, (void)cookie;
	if (!ma || bpf_mem_alloc_check_size(false, size) || !size)
		return 0;
	obj = bpf_mem_alloc(ma, size);
	if (obj)
		memset(obj, 0, size);	/* the kernel's bpf_obj_new zeroes too */
	return (uint64_t)(uintptr_t)obj;
}

uint64_t bpfmem_ubpf_obj_drop(uint64_t ptr, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
			      void *cookie)
{
	struct bpf_mem_alloc *ma = bpfmem_ubpf_ma();
	const char *p = (const char *)(uintptr_t)ptr;

	(void)r2, (void)r3, (void)r4, (void)r5, (void)cookie;
	/* the start of an object: its first byte is the caller's, the byte
	 * before it is the allocator's header, which bpfmem_owns() refuses */
	if (!ma || !p || !bpfmem_owns(ma, p, 1) || bpfmem_owns(ma, p - 1, 1))
		return (uint64_t)-EINVAL;
	bpf_mem_free(ma, (void *)p);
	return 0;
}

bool bpfmem_ubpf_bounds_check(void *ctx, uint64_t addr, uint64_t size)
{
	return bpfmem_owns(ctx, (const void *)(uintptr_t)addr, size);
}
