/* SPDX-License-Identifier: MIT */
/*
 * libbpfmem: the Linux kernel's BPF memory allocator (kernel/bpf/memalloc.c)
 * in userspace.  One include gives the whole public API: the kernel-compatible
 * bpf_mem_* functions and the bpfmem_* runtime that emulates per-CPU state,
 * RCU and memory accounting.
 *
 * Context rules (see README.md, "What may be called from where"):
 *   AS  - async-signal-safe: may run in a signal handler, even one that
 *         interrupted the same thread inside the library.
 *   P   - process context only: may block, may call malloc, must not be called
 *         from a signal handler.
 */
#ifndef BPFMEM_H
#define BPFMEM_H

#include <stdbool.h>
#include <stddef.h>

#include "bpfmem_version.h"	/* BPFMEM_VERSION_MAJOR, _MINOR, _PATCH */

#ifdef __cplusplus
extern "C" {
#endif

struct bpf_mem_cache;
struct bpf_mem_caches;
struct bpfmem_objcg;

/*
 * An allocator.  Complete type so that users embed it in their own structs;
 * the fields are private.  A zeroed struct is "not initialised": every
 * allocation from it returns NULL and destroy is a no-op.  It must not be
 * copied or moved while initialised.
 */
struct bpf_mem_alloc {
	struct bpf_mem_caches *caches;	/* any-size: per-CPU array of 11 caches */
	struct bpf_mem_cache *cache;	/* fixed-size: per-CPU cache */
	struct bpfmem_objcg *objcg;	/* accounting group, referenced */
	bool percpu;			/* objects are per-CPU areas */
	unsigned int magic;		/* set while initialised: catches garbage */
	struct bpf_mem_alloc *next_ma;	/* registry of live allocators (fork) */
	struct bpf_mem_alloc **pprev_ma;
};

/* Allocation flags for bpf_mem_cache_alloc_flags(). */
#define BPFMEM_GFP_NOWAIT 0x0u	/* never blocks; NULL when the cache is empty (AS) */
#define BPFMEM_GFP_KERNEL 0x1u	/* may call the backend allocator when the cache is empty (P) */

/* Largest any-size request: 4096 bytes minus the 8-byte header. */
#define BPFMEM_ALLOC_SIZE_MAX 4096

/* ---- kernel-compatible API: 0 or a negative errno, NULL on failure ------ */

/* P.  size > 0: fixed-size cache of `size` bytes (any size, also > 4096);
 * size == 0: any-size allocator (11 size classes).  percpu: objects are
 * per-CPU areas (size must then be > 0).  Charges the caller's current
 * accounting group (bpfmem_objcg_set_current). */
int bpf_mem_alloc_init(struct bpf_mem_alloc *ma, int size, bool percpu);
/* P.  Any-size per-CPU allocator with no size class set up yet; add classes
 * with bpf_mem_alloc_percpu_unit_init().  Takes its own reference on objcg. */
int bpf_mem_alloc_percpu_init(struct bpf_mem_alloc *ma, struct bpfmem_objcg *objcg);
/* P.  Set up (once) the size class that holds per-CPU units of `size` bytes. */
int bpf_mem_alloc_percpu_unit_init(struct bpf_mem_alloc *ma, int size);
/* P.  No allocation or free may run concurrently.  Leaves *ma zeroed. */
void bpf_mem_alloc_destroy(struct bpf_mem_alloc *ma);
/* AS. 0 if an any-size allocator can serve `size`, else -E2BIG. */
int bpf_mem_alloc_check_size(bool percpu, size_t size);

/* AS.  Any-size allocator. */
void *bpf_mem_alloc(struct bpf_mem_alloc *ma, size_t size);
void bpf_mem_free(struct bpf_mem_alloc *ma, void *ptr);
void bpf_mem_free_rcu(struct bpf_mem_alloc *ma, void *ptr);

/* AS.  Fixed-size allocator. */
void *bpf_mem_cache_alloc(struct bpf_mem_alloc *ma);
void bpf_mem_cache_free(struct bpf_mem_alloc *ma, void *ptr);
void bpf_mem_cache_free_rcu(struct bpf_mem_alloc *ma, void *ptr);
/* P.  Hand an object straight back to the backend, skipping the caches. */
void bpf_mem_cache_raw_free(void *ptr);
/* AS with BPFMEM_GFP_NOWAIT, P with BPFMEM_GFP_KERNEL. */
void *bpf_mem_cache_alloc_flags(struct bpf_mem_alloc *ma, unsigned int gfp);

/* ---- runtime: virtual CPUs --------------------------------------------- */

#define BPFMEM_ATTACH_PIN 0x1u	/* also sched_setaffinity() to real CPU cpu % online */

/* AS.  Number of virtual CPUs: constant for the life of the process. */
int bpfmem_nr_cpus(void);
/* P.  Own virtual CPU `cpu`: 0, -EBUSY (owned by another live thread),
 * -EINVAL (out of range or unknown flags), or the sched_setaffinity errno. */
int bpfmem_thread_attach(int cpu, unsigned int flags);
/* P.  Release the caller's virtual CPU; its cached objects stay there. */
void bpfmem_thread_detach(void);
/* AS.  The caller's virtual CPU, -1 if it has none (never attaches). */
int bpfmem_current_cpu(void);
/* AS.  CPU `cpu`'s copy of a per-CPU object (0 <= cpu < bpfmem_nr_cpus()).
 * cpu == bpfmem_nr_cpus() is the shared overflow CPU, used by threads that
 * found every virtual CPU taken: to sum a per-CPU counter, include it.
 * NULL for any other cpu. */
void *bpfmem_per_cpu_ptr(void *pptr, int cpu);
/* AS.  The caller's copy; attaches the caller on first use (the shared
 * CPU's copy when no virtual CPU is free). */
void *bpfmem_this_cpu_ptr(void *pptr);

/* ---- runtime: RCU ------------------------------------------------------ */

/* Read side: AS with the default (bp) flavors.  Nestable. */
void bpfmem_rcu_read_lock(void);
void bpfmem_rcu_read_unlock(void);
void bpfmem_rcu_read_lock_trace(void);
void bpfmem_rcu_read_unlock_trace(void);
/* P.  Must not be called inside a read-side section of the same domain. */
void bpfmem_synchronize_rcu(void);
void bpfmem_synchronize_rcu_trace(void);
/* P.  Returns after every RCU callback the library queued before the call
 * has run (objects freed with *_free_rcu before the call have been recycled
 * or returned to the backend). */
void bpfmem_rcu_barrier(void);

/* ---- runtime: memory accounting ---------------------------------------- */

/* P.  A group with a byte limit (0: no limit); NULL on ENOMEM. */
struct bpfmem_objcg *bpfmem_objcg_create(size_t limit_bytes);
/* P.  Drop a reference; NULL is a no-op. */
void bpfmem_objcg_put(struct bpfmem_objcg *cg);
/* AS.  Bytes charged now; 0 for NULL. */
size_t bpfmem_objcg_usage(const struct bpfmem_objcg *cg);
/* AS.  Set the calling thread's current group; returns the previous one.
 * Does not take a reference: the caller keeps `cg` alive while current. */
struct bpfmem_objcg *bpfmem_objcg_set_current(struct bpfmem_objcg *cg);

/* ---- runtime: warnings ------------------------------------------------- */

/* P.  Where WARN_ON_ONCE-style reports go; NULL restores the default (one
 * line on stderr).  The handler may run in any context, signal handlers
 * included. */
void bpfmem_set_warn_handler(void (*fn)(const char *msg, void *arg), void *arg);

/* ---- ownership: for the bounds checks of BPF runtimes ------------------ */

/*
 * AS, lock-free, O(1): true iff [addr, addr + len) lies inside one unit of
 * memory that `ma` manages: an object handed out, cached on a virtual CPU,
 * waiting for a grace period, or back in one of ma's own backend chunks
 * (memory that stays mapped and holds only ma's objects of that size: the
 * type-stable memory BPF's safety model relies on).  A unit is what the
 * caller of bpf_mem_alloc/bpf_mem_cache_alloc may use: from the pointer
 * handed out to the end of its size class (any-size: e.g. 24 bytes for a
 * 20-byte request), never the 8-byte header in front of it.  len == 0 asks
 * whether addr itself is such a byte.  Never dereferences addr: wild,
 * unmapped and NULL addresses give false.  False for per-CPU allocators
 * (their copies are reached through bpfmem_per_cpu_ptr) and for a zeroed
 * or destroyed `ma`.  Memory a concurrent free is unmapping may be answered
 * either way.
 */
bool bpfmem_owns(const struct bpf_mem_alloc *ma, const void *addr, size_t len);

/*
 * P.  Call fn(start, len, arg) for every backend chunk of `ma`, and return
 * how many (-EINVAL for a per-CPU or uninitialised allocator, or fn NULL).
 * [start, start + len) holds only ma's units and their 8-byte headers, for
 * runtimes that admit memory by ranges registered up front (rbpf's
 * register_allowed_memory); a program that writes a header corrupts the
 * allocator, which bpfmem_owns() would have refused.  Chunks come and go as
 * caches refill and trim: those mapped or unmapped during the call (fn
 * itself may allocate: no lock is held) may or may not be reported.
 */
int bpfmem_for_each_chunk(const struct bpf_mem_alloc *ma,
			  void (*fn)(void *start, size_t len, void *arg), void *arg);

/* ---- statistics -------------------------------------------------------- */

/*
 * Statistics of one size class, summed over every virtual CPU.  Read racily
 * while the allocator is in use; exact when it is quiescent.  The first field
 * is the struct size (libbpf style) so the struct can grow.
 */
struct bpfmem_cache_stats {
	size_t sz;			/* set to sizeof(struct bpfmem_cache_stats) */
	unsigned int unit_size;		/* object size incl. 8-byte header */
	int low_watermark;
	int high_watermark;
	int batch;
	unsigned int cpus_used;		/* virtual CPUs with objects on their free list */
	unsigned long cached;		/* objects on the virtual CPUs' free lists */
	unsigned long backend_allocs;	/* objects taken from the backend */
	unsigned long backend_frees;	/* objects given back to the backend */
	unsigned long refills;		/* refill work runs that added objects */
	unsigned long trims;		/* frees above the high watermark that trimmed */
};

/* Number of size classes of `ma`: 11 for any-size allocators, 1 for
 * fixed-size ones, 0 (or -EINVAL) when not initialised. */
int bpfmem_nr_size_classes(const struct bpf_mem_alloc *ma);
/* P.  Fill `st` (st->sz must be set) for size class `idx`.  0, -EINVAL,
 * -ENOENT (per-CPU class not set up). */
int bpfmem_cache_stats(const struct bpf_mem_alloc *ma, int idx, struct bpfmem_cache_stats *st);

/* ---- version ----------------------------------------------------------- */

/* AS.  The loaded library's version, "MAJOR.MINOR.PATCH"; compare it with
 * the BPFMEM_VERSION_* macros the caller was compiled against. */
const char *bpfmem_version(void);

#ifdef __cplusplus
}
#endif

#endif /* BPFMEM_H */
