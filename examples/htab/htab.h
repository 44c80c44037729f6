/* SPDX-License-Identifier: MIT */
/*
 * htab: a hash map built the way the kernel's BPF_MAP_TYPE_HASH is, on the public API of
 * libbpfmem.  A BPF runtime can copy htab.c and htab.h as its map implementation.
 *
 * Context rules (as in bpfmem.h): htab_create/htab_destroy are P (process context);
 * lookup, update, delete and get_next_key are AS (they may run in a signal handler, where an
 * update that would re-enter a bucket its own thread holds returns -EBUSY, as the kernel's
 * does when a BPF program re-enters a map on the same CPU).
 */
#ifndef HTAB_H
#define HTAB_H

#include <stddef.h>
#include <stdint.h>

#include <bpfmem.h>

/* Update flags and map flags, with the kernel's values (<linux/bpf.h> has them as enums). */
#ifndef BPF_ANY
#define BPF_ANY		0	/* create a new element or update an existing one */
#define BPF_NOEXIST	1	/* create a new element only: -EEXIST if the key is there */
#define BPF_EXIST	2	/* update an existing element only: -ENOENT if it is not */
#endif
#ifndef BPF_F_NO_PREALLOC
#define BPF_F_NO_PREALLOC	(1U << 0)	/* allocate elements at update time */
#endif

#define HTAB_MAX_KEY_SIZE	512	/* the kernel's limit: a key lives on the BPF stack */

/*
 * Where the elements of a BPF_F_NO_PREALLOC map come from when not from libbpfmem: the
 * bench/ baseline that does what a runtime writes without the library.  free() must keep
 * the memory of `elem` valid until every bpfmem_rcu_read_lock() section that may still see
 * it has ended (an RCU-deferred free).
 */
struct htab_elem_ops {
	void *(*alloc)(void *ctx, size_t size);	/* NULL: -ENOMEM */
	void (*free)(void *ctx, void *elem);
	void *ctx;
};

struct htab_attr {
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;	/* 0: preallocated (the kernel's default) or BPF_F_NO_PREALLOC */
	int percpu;		/* BPF_MAP_TYPE_PERCPU_HASH: one value per virtual CPU */
	const struct htab_elem_ops *elem_ops;	/* NULL: libbpfmem (only with BPF_F_NO_PREALLOC) */
};

struct htab;

/* P.  0 and *map, or -EINVAL (a size or max_entries of 0, unknown flags, elem_ops with a
 * per-CPU or preallocated map), -E2BIG (key larger than HTAB_MAX_KEY_SIZE, value larger
 * than the allocator serves), -ENOMEM. */
int htab_create(const struct htab_attr *attr, struct htab **map);
/* P.  No other call on the map may run concurrently.  NULL is a no-op. */
void htab_destroy(struct htab *map);

/*
 * AS.  The value of `key`, or NULL.  Call inside bpfmem_rcu_read_lock(): the pointer stays
 * valid until the matching unlock.  A per-CPU map gives the calling thread's virtual CPU's
 * copy.  In a preallocated map, as in the kernel, the element may be deleted and reused for
 * another key while the caller reads it (the memory stays valid; the contents may change).
 */
void *htab_lookup(struct htab *map, const void *key);
/* AS.  Per-CPU map: CPU `cpu`'s copy (0 <= cpu <= bpfmem_nr_cpus(), the last one being the
 * shared overflow CPU), under bpfmem_rcu_read_lock() as above.  NULL otherwise. */
void *htab_lookup_percpu(struct htab *map, const void *key, int cpu);
/*
 * AS.  flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST.  0, or -EINVAL (unknown flags), -EEXIST
 * (BPF_NOEXIST and the key is there), -ENOENT (BPF_EXIST and it is not), -E2BIG (a new key
 * in a map holding max_entries elements), -ENOMEM (the allocator's cache is empty), -EBUSY
 * (a signal handler re-entered a bucket its own thread is updating).  A per-CPU map writes
 * the calling thread's copy; the other copies of a new element are zero.
 */
int htab_update(struct htab *map, const void *key, const void *value, uint64_t flags);
/* AS.  0, -ENOENT, -EBUSY. */
int htab_delete(struct htab *map, const void *key);
/* AS.  The key after `key` in iteration order into next_key (the first key when `key` is
 * NULL or not in the map): 0, or -ENOENT after the last key. */
int htab_get_next_key(struct htab *map, const void *key, void *next_key);
/* AS.  Elements in the map now (racy while it changes). */
uint32_t htab_count(const struct htab *map);

#endif /* HTAB_H */
