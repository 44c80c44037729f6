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
 * has run: objects the calling thread freed with *_free_rcu before the call
 * have been recycled or returned to the backend.  Other threads hand theirs
 * on in batches (bpfmem_rcu_read_lock(3)): fewer than a batch per size
 * class may still wait with their virtual CPU. */
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
	/* added after 0.1.0 (callers built before pass a smaller sz and get
	 * the fields they know): allocations that found the cache empty and
	 * no batch ready, and refilled it from the backend themselves */
	unsigned long inline_refills;
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

/* ---- inlined fast paths (opt-in) -------------------------------------------
 *
 * By default every call goes to the library.  A program that defines
 * BPFMEM_INLINE before including this header gets bpf_mem_cache_alloc(),
 * bpf_mem_cache_free(), bpf_mem_alloc() and bpf_mem_free() inlined into the
 * caller for their fast path (an owned virtual CPU, a list between its
 * watermarks, no re-entry), as liburcu does with _LGPL_SOURCE; everything
 * else calls the library.  Same contract, same contexts (AS).  The calls
 * that go through the inlined code skip the checks of a BPFMEM_DEBUG
 * library: debug without BPFMEM_INLINE.
 *
 * The inlined code reads the library's per-thread CPU, its table of size
 * classes and the first fields of its caches, so that layout is frozen and
 * versioned: it is reached only through the two symbols named after
 * BPFMEM_FAST_ABI.  A program built
 * against one layout and run against a library with another fails at
 * start-up (the dynamic linker finds no such symbol) instead of corrupting
 * memory.  The library checks this section against its own structs at
 * compile time.  Nothing here is API: use the functions above.
 */
#define BPFMEM_FAST_ABI			3
#define BPFMEM_FAST_THIS_CPU		bpfmem_fast_abi3_this_cpu
#define BPFMEM_FAST_CLASS_OFF		bpfmem_fast_abi3_class_off
#define BPFMEM_FAST_CPU_STRIDE		65536	/* between two virtual CPUs' copies of an area */
#define BPFMEM_FAST_CLASS_SIZE		384	/* one size class within those */
#define BPFMEM_FAST_HDR			8	/* header before each object */
/* the calls a program inlines, wherever it makes them: also what lets a
 * size the compiler knows fold to its class */
#define _BPFMEM_ALWAYS_INLINE		static inline __attribute__((always_inline))

/*
 * The first fields of a virtual CPU's cache, owned by the thread on that CPU
 * and touched only inside `active` (0: nobody on this thread is inside).
 * The fast paths enter only if `active` is 0 and leave it at 0: a handler
 * that runs between the test and the store finds 0, runs to completion and
 * leaves 0 behind; one that finds it taken goes to the library, whose
 * counter path leaves the value as it found it.  Storing constants keeps
 * consecutive calls from chaining through a load-add-store of the guard.
 */
struct bpfmem_fast_cache {
	void *first;		/* free list, linked through the object headers */
	int cnt;		/* objects on it */
	int alloc_floor;	/* alloc stays inline while cnt > alloc_floor */
	int free_ceil;		/* free stays inline while cnt < free_ceil */
	int active;		/* re-entry guard (relaxed atomic: see below) */
	void *tgt;		/* the cache the last object freed here came from */
};

/*
 * The calling thread's virtual CPU as the byte offset of its copies
 * (cpu * BPFMEM_FAST_CPU_STRIDE).  A thread without a CPU of its own holds a
 * negative offset: one into a guard copy that lies before the first copy of
 * every area and is never set up, so its zeroed counts and watermarks send
 * both fast paths to the library with no test of their own.  Threads
 * without a CPU share those guard caches: they only ever write `active`
 * there, which is why the fast paths access it atomically (relaxed, plain
 * loads and stores on every target).
 */
extern __thread long bpfmem_fast_abi3_this_cpu __attribute__((tls_model("initial-exec")));

/*
 * Offset of the size class of `size` bytes (header included, 1 <= size <=
 * 4096) within a virtual CPU's caches, at [(size + 7) / 8]: the kernel's
 * classes, in its order 96, 192, 16, 32, 64, 128, 256, 512, 1024, 2048,
 * 4096, BPFMEM_FAST_CLASS_SIZE apart.  The library's own calls look classes
 * up there too; read-only.
 */
extern const unsigned short bpfmem_fast_abi3_class_off[BPFMEM_ALLOC_SIZE_MAX / 8 + 1];

/* The same classes computed, for a size the compiler knows: it folds this
 * to a constant where the table would cost a load (the library's tests
 * check that both agree at every size). */
static inline int _bpfmem_size_class(size_t size)
{
	static const unsigned char idx[24] = {
		2, 2, 3, 3, 4, 4, 4, 4, 0, 0, 0, 0,
		5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 1, 1,
	};

	if (size <= 192)
		return idx[(size - 1) / 8];
	return 30 - __builtin_clz((unsigned int)(size - 1));
}

/* Offset of the class of `size` bytes, header included (1 <= size <= 4096). */
_BPFMEM_ALWAYS_INLINE size_t _bpfmem_class_off_of(size_t size)
{
	if (__builtin_constant_p(size))
		return (size_t)_bpfmem_size_class(size) * BPFMEM_FAST_CLASS_SIZE;
	return BPFMEM_FAST_CLASS_OFF[(size + 7) / 8];
}

/* Inside `active`: one object off the list, or NULL (at the floor, or a
 * handler interrupted this thread inside the cache). */
static inline void *_bpfmem_fast_alloc(struct bpfmem_fast_cache *c)
{
	void **node = (void **)0;
	int cnt;

	if (__atomic_load_n(&c->active, __ATOMIC_RELAXED))
		return node;
	__atomic_store_n(&c->active, 1, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);	/* compiler barrier */
	cnt = __atomic_load_n(&c->cnt, __ATOMIC_RELAXED);
	/* the floor is never below 0, so the list is not empty */
	if (cnt > c->alloc_floor) {
		node = (void **)c->first;
		c->first = *node;
		__atomic_store_n(&c->cnt, cnt - 1, __ATOMIC_RELAXED);
		*node = c;		/* the header names the cache */
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);	/* compiler barrier */
	__atomic_store_n(&c->active, 0, __ATOMIC_RELAXED);
	return node ? (char *)node + BPFMEM_FAST_HDR : (char *)0;
}

/* Inside `active`: `ptr` back on the list; false when the library must take
 * it (at the ceiling, or re-entered). */
static inline bool _bpfmem_fast_free(struct bpfmem_fast_cache *c, void *ptr)
{
	void **node = (void **)((char *)ptr - BPFMEM_FAST_HDR);
	/* the caller's object: no handler writes its header, so it is read
	 * outside the guard, where an any-size free has just read it */
	void *owner = *node;
	bool done = false;
	int cnt;

	if (__atomic_load_n(&c->active, __ATOMIC_RELAXED))
		return false;
	__atomic_store_n(&c->active, 1, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);	/* compiler barrier */
	cnt = __atomic_load_n(&c->cnt, __ATOMIC_RELAXED);
	if (cnt < c->free_ceil) {
		__atomic_store_n(&c->tgt, owner, __ATOMIC_RELAXED);
		*node = c->first;
		c->first = node;
		__atomic_store_n(&c->cnt, cnt + 1, __ATOMIC_RELAXED);
		done = true;
	}
	__atomic_signal_fence(__ATOMIC_SEQ_CST);	/* compiler barrier */
	__atomic_store_n(&c->active, 0, __ATOMIC_RELAXED);
	return done;
}

/* Class `off` of per-CPU `area` on the CPU at offset `cpu_off` (above). */
static inline struct bpfmem_fast_cache *_bpfmem_fast_cache(void *area, size_t off, long cpu_off)
{
	return (struct bpfmem_fast_cache *)((char *)area + cpu_off + off);
}

/*
 * Offset of an any-size object's class within a virtual CPU's caches: its
 * header names the cache it came from, which lies at that offset in some
 * CPU's copy of the per-CPU `area`, and the copies are BPFMEM_FAST_CPU_STRIDE
 * apart, a power of two larger than the offset, wherever the area lies in
 * its chunk.  No load beyond the header.
 */
static inline size_t _bpfmem_class_off(const void *area, const void *ptr)
{
	const char *owner = *(const char *const *)((const char *)ptr - BPFMEM_FAST_HDR);

	return (size_t)(owner - (const char *)area) & (BPFMEM_FAST_CPU_STRIDE - 1);
}

#ifdef BPFMEM_INLINE
_BPFMEM_ALWAYS_INLINE void *_bpfmem_inline_cache_alloc(struct bpf_mem_alloc *ma)
{
	long cpu = BPFMEM_FAST_THIS_CPU;

	if (ma && ma->cache) {
		void *p = _bpfmem_fast_alloc(_bpfmem_fast_cache(ma->cache, 0, cpu));
		if (p)
			return p;
	}
	return (bpf_mem_cache_alloc)(ma);
}

_BPFMEM_ALWAYS_INLINE void _bpfmem_inline_cache_free(struct bpf_mem_alloc *ma, void *ptr)
{
	long cpu = BPFMEM_FAST_THIS_CPU;

	if (ptr && ma && ma->cache &&
	    _bpfmem_fast_free(_bpfmem_fast_cache(ma->cache, 0, cpu), ptr))
		return;
	(bpf_mem_cache_free)(ma, ptr);
}

_BPFMEM_ALWAYS_INLINE void *_bpfmem_inline_alloc(struct bpf_mem_alloc *ma, size_t size)
{
	long cpu = BPFMEM_FAST_THIS_CPU;

	if (ma && ma->caches && !ma->percpu &&
	    size - 1 < BPFMEM_ALLOC_SIZE_MAX - BPFMEM_FAST_HDR) {
		size_t off = _bpfmem_class_off_of(size + BPFMEM_FAST_HDR);
		void *p = _bpfmem_fast_alloc(_bpfmem_fast_cache(ma->caches, off, cpu));
		if (p)
			return p;
	}
	return (bpf_mem_alloc)(ma, size);
}

_BPFMEM_ALWAYS_INLINE void _bpfmem_inline_free(struct bpf_mem_alloc *ma, void *ptr)
{
	long cpu = BPFMEM_FAST_THIS_CPU;

	if (ptr && ma && ma->caches) {
		if (_bpfmem_fast_free(_bpfmem_fast_cache(ma->caches,
							 _bpfmem_class_off(ma->caches, ptr), cpu),
				      ptr))
			return;
	}
	(bpf_mem_free)(ma, ptr);
}

#define bpf_mem_cache_alloc(ma)		_bpfmem_inline_cache_alloc(ma)
#define bpf_mem_cache_free(ma, ptr)	_bpfmem_inline_cache_free((ma), (ptr))
#define bpf_mem_alloc(ma, size)		_bpfmem_inline_alloc((ma), (size))
#define bpf_mem_free(ma, ptr)		_bpfmem_inline_free((ma), (ptr))
#endif /* BPFMEM_INLINE */

#ifdef __cplusplus
}
#endif

#endif /* BPFMEM_H */
