/* SPDX-License-Identifier: MIT */
/*
 * libbpfmem behind a ubpf host: bpf_obj_new / bpf_obj_drop helpers in ubpf's
 * helper signature, and the data bounds check answered by bpfmem_owns().
 * Copy this file and bpfmem_ubpf.c into a host, or link them; they need
 * only <bpfmem.h>, not ubpf's headers.
 *
 * Host side:
 *
 *	bpfmem_ubpf_init();
 *	ubpf_register(vm, BPFMEM_UBPF_OBJ_NEW, "bpf_obj_new",
 *		      as_external_function_t((void *)bpfmem_ubpf_obj_new));
 *	ubpf_register(vm, BPFMEM_UBPF_OBJ_DROP, "bpf_obj_drop",
 *		      as_external_function_t((void *)bpfmem_ubpf_obj_drop));
 *	ubpf_register_data_bounds_check(vm, bpfmem_ubpf_ma(), bpfmem_ubpf_bounds_check);
 *
 * Program side (clang -O2 -target bpf emits helper calls by number):
 *
 *	static void *(*bpf_obj_new)(unsigned long size) = (void *)BPFMEM_UBPF_OBJ_NEW;
 *	static long (*bpf_obj_drop)(void *obj) = (void *)BPFMEM_UBPF_OBJ_DROP;
 */
#ifndef BPFMEM_UBPF_H
#define BPFMEM_UBPF_H

/* Helper numbers: the host registers at these, the program calls them. */
#define BPFMEM_UBPF_OBJ_NEW	1
#define BPFMEM_UBPF_OBJ_DROP	2

#ifndef __bpf__
#include <stdbool.h>
#include <stdint.h>
#include <bpfmem.h>

/* P.  The any-size allocator behind the helpers, shared by every VM and
 * thread as the kernel's bpf_global_ma is.  0 or a negative errno. */
int bpfmem_ubpf_init(void);
/* P.  No program may run any more. */
void bpfmem_ubpf_exit(void);
/* AS.  The allocator (NULL before init): the bounds check's context. */
struct bpf_mem_alloc *bpfmem_ubpf_ma(void);

/*
 * AS.  bpf_obj_new(size): a zeroed object of `size` bytes (1..4088), 0
 * when the size is out of range or the cache is empty.  `cookie` is ubpf's
 * implicit sixth argument (the program's context); unused.
 */
uint64_t bpfmem_ubpf_obj_new(uint64_t size, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
			     void *cookie);
/*
 * AS.  bpf_obj_drop(ptr): 0, or -EINVAL (as u64) for a pointer that is not
 * the start of an object of the allocator (dropped, never freed).  A second
 * drop of the same object cannot be told from a first one (the memory stays
 * type-stable): as in the kernel, where the verifier forbids it, the
 * program must not; BPFMEM_DEBUG builds report it.
 */
uint64_t bpfmem_ubpf_obj_drop(uint64_t ptr, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5,
			      void *cookie);
/*
 * AS.  ubpf's data bounds check (ubpf_bounds_check): may the program touch
 * [addr, addr + size)?  `ctx` is the allocator whose objects are admitted
 * (bpfmem_ubpf_ma() as registered above).  Never dereferences addr.
 */
bool bpfmem_ubpf_bounds_check(void *ctx, uint64_t addr, uint64_t size);
#endif /* __bpf__ */

#endif /* BPFMEM_UBPF_H */
