/* SPDX-License-Identifier: MIT */
/*
 * htab: the kernel's BPF hash map (kernel/bpf/hashtab.c) on libbpfmem's public API.
 *
 * An array of buckets, each a singly linked chain with its own lock.  Writers (update,
 * delete) take the bucket lock; readers (lookup, get_next_key) walk the chain without any
 * lock inside an RCU read-side section, so a writer publishes an element with a release
 * store of the link and unlinks it without touching the element's own link: a reader that
 * stands on an unlinked element still finds its way to the end of the chain.
 *
 * Elements come from a fixed-size bpf_mem_alloc cache (BPF_F_NO_PREALLOC) and per-CPU values
 * from a per-CPU one, or, in a preallocated map (the kernel's default), from a pool allocated
 * at create time whose elements are reused at once.  Each chain ends in a "nulls" marker, an
 * odd value naming its bucket: a reader whose element was reused into another bucket ends on
 * a foreign marker and starts over, as with the kernel's hlist_nulls.
 */
#define _GNU_SOURCE
#include "htab.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define HTAB_FREELISTS	16	/* preallocated maps: lists of free elements, picked by CPU */

struct htab_elem {
	_Atomic uintptr_t next;	/* the next element, or the chain's nulls marker */
	/* preallocated maps: the free list.  Not `next`: a reader still standing on a freed
	 * element must keep a chain that leads to a nulls marker. */
	struct htab_elem *free_next;
	void *pcpu_obj;		/* per-CPU maps: its first word is the per-CPU pointer */
	uint32_t hash;
	uint32_t pad;
	unsigned char key[];	/* key_size bytes, then the value at a multiple of 8 */
};

struct bucket {
	_Atomic uintptr_t head;	/* readers: acquire; writers under `lock`: release */
	_Atomic uintptr_t lock;	/* 0, or the token of the thread that holds it */
};

struct freelist {
	_Atomic uintptr_t lock;	/* as bucket.lock; guards head */
	struct htab_elem *head;
} __attribute__((aligned(64)));

struct htab {
	struct htab_attr attr;
	uint32_t n_buckets;	/* a power of two >= max_entries */
	uint32_t key_room;	/* key_size rounded up to 8: where the value starts */
	size_t elem_size;
	uint64_t seed;
	struct bucket *buckets;
	/* elements linked or being linked; a new key takes a slot first, so that concurrent
	 * inserts cannot push the map past max_entries */
	_Atomic uint32_t count;
	struct bpf_mem_alloc ma;	/* elements of a BPF_F_NO_PREALLOC map */
	struct bpf_mem_alloc pcpu_ma;	/* values of a per-CPU map */
	struct htab_elem *pool;		/* preallocated map: every element, one block */
	size_t pool_elems;
	struct freelist freelists[HTAB_FREELISTS];
};

/*
 * The token of a lock holder is the address of a thread-local byte: unique among live
 * threads, and known to a signal handler that interrupted its own thread inside the map.
 * initial-exec: a plain TLS load, safe in a handler even when this file is in a .so.
 */
static __thread char lock_token __attribute__((tls_model("initial-exec")));

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* 0 with the lock held, or -EBUSY when the caller's own thread holds it (re-entry from a
 * signal handler: waiting would deadlock). */
static int spin_lock(_Atomic uintptr_t *lock)
{
	uintptr_t me = (uintptr_t)&lock_token;

	for (unsigned int spins = 0;; spins++) {
		uintptr_t seen = 0;

		if (atomic_compare_exchange_weak_explicit(lock, &seen, me, memory_order_acquire,
							  memory_order_relaxed))
			return 0;
		if (seen == me)
			return -EBUSY;
		/* the holder may be preempted: on a busy machine, give it the CPU */
		if (spins >= 100)
			sched_yield();
		else
			cpu_relax();
	}
}

static void spin_unlock(_Atomic uintptr_t *lock)
{
	atomic_store_explicit(lock, 0, memory_order_release);
}

static inline uintptr_t nulls_marker(uint32_t bucket)
{
	return ((uintptr_t)bucket << 1) | 1;
}

static inline bool is_nulls(uintptr_t v)
{
	return v & 1;
}

static uint32_t hash_key(const struct htab *h, const void *key)
{
	const unsigned char *p = key;
	uint32_t len = h->attr.key_size;
	uint64_t x = h->seed ^ ((uint64_t)len * 0x9e3779b97f4a7c15ull);

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t k;

		memcpy(&k, p, 8);
		x = (x ^ k) * 0xff51afd7ed558ccdull;
		x ^= x >> 32;
	}
	if (len) {
		uint64_t k = 0;

		memcpy(&k, p, len);
		x = (x ^ k) * 0xc4ceb9fe1a85ec53ull;
	}
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (uint32_t)x;
}

static inline void *elem_value(const struct htab *h, struct htab_elem *l)
{
	return l->key + h->key_room;
}

static inline void *pcpu_value(struct htab_elem *l, int cpu)
{
	return bpfmem_per_cpu_ptr(*(void **)l->pcpu_obj, cpu);
}

/* Under bpfmem_rcu_read_lock() or the bucket lock. */
static struct htab_elem *lookup_elem(const struct htab *h, uint32_t hash, const void *key)
{
	uint32_t idx = hash & (h->n_buckets - 1);
	const struct bucket *b = &h->buckets[idx];
	uintptr_t n;

again:
	n = atomic_load_explicit(&b->head, memory_order_acquire);
	while (!is_nulls(n)) {
		struct htab_elem *l = (struct htab_elem *)n;

		if (l->hash == hash && !memcmp(l->key, key, h->attr.key_size))
			return l;
		n = atomic_load_explicit(&l->next, memory_order_acquire);
	}
	/* ended in another bucket: an element on the way was reused (preallocated maps) */
	if (n != nulls_marker(idx))
		goto again;
	return NULL;
}

/* ---- preallocated maps: free lists of pool elements, one per CPU group ---- */

static unsigned int freelist_home(void)
{
	int cpu = bpfmem_current_cpu();

	/* a thread without a virtual CPU spreads by its token instead */
	return cpu >= 0 ? (unsigned int)cpu : (unsigned int)((uintptr_t)&lock_token >> 6);
}

static struct htab_elem *freelist_pop(struct htab *h)
{
	unsigned int home = freelist_home();

	for (unsigned int i = 0; i < HTAB_FREELISTS; i++) {
		struct freelist *fl = &h->freelists[(home + i) % HTAB_FREELISTS];
		struct htab_elem *l;

		if (spin_lock(&fl->lock))
			continue;	/* held by this thread: a handler takes from another list */
		l = fl->head;
		if (l)
			fl->head = l->free_next;
		spin_unlock(&fl->lock);
		if (l)
			return l;
	}
	return NULL;
}

static void freelist_push(struct htab *h, struct htab_elem *l)
{
	unsigned int home = freelist_home();

	/* 16 lists and one thread holds at most one of them: a push always finds a list */
	for (unsigned int i = 0;; i++) {
		struct freelist *fl = &h->freelists[(home + i) % HTAB_FREELISTS];

		if (spin_lock(&fl->lock))
			continue;
		l->free_next = fl->head;
		fl->head = l;
		spin_unlock(&fl->lock);
		return;
	}
}

/* ---- element life ---- */

static bool prealloc(const struct htab *h)
{
	return !(h->attr.map_flags & BPF_F_NO_PREALLOC);
}

/*
 * Why bpf_mem_cache_free_rcu() and not bpf_mem_cache_free().  The kernel's htab frees a
 * deleted or replaced element with bpf_mem_cache_free(): the allocator's memory is
 * type-stable for RCU readers, hlist_nulls makes a reader that followed a reused element
 * start over, and a BPF program tolerates that the value it holds may meanwhile belong to
 * another key.  This map hands its values to arbitrary C code that reads them in place
 * inside bpfmem_rcu_read_lock(); with immediate reuse, the value behind a lookup's pointer
 * could change key under the reader.  bpf_mem_cache_free_rcu() keeps the element out of
 * the cache until every reader that could have found it has left its section, so a lookup
 * sees the element it found, whole, until its unlock.  The price is memory: elements wait
 * for a grace period before they serve again, which the htab-mem scenarios of bench/
 * measure (the preallocated map shows the kernel's immediate reuse).
 */
static void free_elem(struct htab *h, struct htab_elem *l)
{
	if (prealloc(h)) {
		freelist_push(h, l);
		return;
	}
	if (h->attr.elem_ops) {
		h->attr.elem_ops->free(h->attr.elem_ops->ctx, l);
		return;
	}
	if (l->pcpu_obj)
		bpf_mem_cache_free_rcu(&h->pcpu_ma, l->pcpu_obj);
	bpf_mem_cache_free_rcu(&h->ma, l);
}

static void pcpu_init_value(struct htab_elem *l, uint32_t size, const void *value)
{
	int nr = bpfmem_nr_cpus();
	void *mine = bpfmem_this_cpu_ptr(*(void **)l->pcpu_obj);

	/* the kernel's rule for an update from a program: this CPU's copy, zero elsewhere */
	for (int cpu = 0; cpu <= nr; cpu++)
		memset(pcpu_value(l, cpu), 0, size);
	memcpy(mine, value, size);
}

/* A new element holding key and value; `new_key`: it takes a slot of max_entries. */
static struct htab_elem *alloc_elem(struct htab *h, const void *key, const void *value,
				    uint32_t hash, bool new_key, int *err)
{
	struct htab_elem *l;

	if (new_key &&
	    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed) >= h->attr.max_entries) {
		atomic_fetch_sub_explicit(&h->count, 1, memory_order_relaxed);
		*err = -E2BIG;
		return NULL;
	}
	if (prealloc(h))
		l = freelist_pop(h);
	else if (h->attr.elem_ops)
		l = h->attr.elem_ops->alloc(h->attr.elem_ops->ctx, h->elem_size);
	else
		l = bpf_mem_cache_alloc(&h->ma);
	if (!l)
		goto fail;
	if (h->attr.percpu && !prealloc(h)) {
		l->pcpu_obj = bpf_mem_cache_alloc(&h->pcpu_ma);
		if (!l->pcpu_obj) {
			/* never linked, never seen by a reader */
			bpf_mem_cache_free(&h->ma, l);
			goto fail;
		}
	} else if (!h->attr.percpu) {
		l->pcpu_obj = NULL;
	}
	l->hash = hash;
	memcpy(l->key, key, h->attr.key_size);
	if (h->attr.percpu)
		pcpu_init_value(l, h->attr.value_size, value);
	else
		memcpy(elem_value(h, l), value, h->attr.value_size);
	return l;

fail:
	if (new_key)
		atomic_fetch_sub_explicit(&h->count, 1, memory_order_relaxed);
	/* the kernel's codes: an empty pool is a full map, an empty cache is no memory */
	*err = prealloc(h) ? -E2BIG : -ENOMEM;
	return NULL;
}

/* ---- create and destroy ---- */

static int prealloc_pool(struct htab *h)
{
	/* one spare per virtual CPU: an update of an existing key needs its new element
	 * before the old one goes back */
	h->pool_elems = (size_t)h->attr.max_entries + (size_t)bpfmem_nr_cpus();
	h->pool = calloc(h->pool_elems, h->elem_size);
	if (!h->pool)
		return -ENOMEM;
	for (size_t i = 0; i < h->pool_elems; i++) {
		struct htab_elem *l = (struct htab_elem *)((char *)h->pool + i * h->elem_size);

		atomic_init(&l->next, nulls_marker(0));
		if (h->attr.percpu) {
			l->pcpu_obj = bpf_mem_cache_alloc_flags(&h->pcpu_ma, BPFMEM_GFP_KERNEL);
			if (!l->pcpu_obj)
				return -ENOMEM;
		}
		l->free_next = h->freelists[i % HTAB_FREELISTS].head;
		h->freelists[i % HTAB_FREELISTS].head = l;
	}
	return 0;
}

int htab_create(const struct htab_attr *attr, struct htab **map)
{
	struct htab *h;
	uint32_t n = 1;
	int err;

	*map = NULL;
	if (!attr->key_size || !attr->value_size || !attr->max_entries ||
	    (attr->map_flags & ~BPF_F_NO_PREALLOC))
		return -EINVAL;
	if (attr->elem_ops && (attr->percpu || !(attr->map_flags & BPF_F_NO_PREALLOC) ||
			       !attr->elem_ops->alloc || !attr->elem_ops->free))
		return -EINVAL;
	if (attr->key_size > HTAB_MAX_KEY_SIZE || attr->max_entries > (1u << 31))
		return -E2BIG;
	if (attr->percpu && attr->value_size > BPFMEM_ALLOC_SIZE_MAX)
		return -E2BIG;
	h = aligned_alloc(64, (sizeof(*h) + 63) & ~(size_t)63);
	if (!h)
		return -ENOMEM;
	memset(h, 0, sizeof(*h));
	h->attr = *attr;
	while (n < attr->max_entries)
		n <<= 1;
	h->n_buckets = n;
	h->key_room = (attr->key_size + 7) & ~7u;
	h->elem_size = sizeof(struct htab_elem) + h->key_room +
		       (attr->percpu ? 0 : ((attr->value_size + 7) & ~7u));
	/* a per-map seed, as the kernel's, so that keys collide differently in every map */
	h->seed = (uint64_t)(uintptr_t)h * 0x9e3779b97f4a7c15ull ^ (uint64_t)rand();
	h->buckets = calloc(n, sizeof(*h->buckets));
	if (!h->buckets) {
		err = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < n; i++)
		atomic_init(&h->buckets[i].head, nulls_marker(i));
	if (attr->percpu) {
		err = bpf_mem_alloc_init(&h->pcpu_ma, (int)attr->value_size, true);
		if (err)
			goto fail;
	}
	if (prealloc(h))
		err = prealloc_pool(h);
	else if (!attr->elem_ops)
		err = bpf_mem_alloc_init(&h->ma, (int)h->elem_size, false);
	else
		err = 0;
	if (err)
		goto fail;
	*map = h;
	return 0;

fail:
	htab_destroy(h);
	return err;
}

void htab_destroy(struct htab *h)
{
	if (!h)
		return;
	for (uint32_t i = 0; h->buckets && i < h->n_buckets; i++) {
		uintptr_t n = atomic_load_explicit(&h->buckets[i].head, memory_order_relaxed);

		while (!is_nulls(n)) {
			struct htab_elem *l = (struct htab_elem *)n;

			n = atomic_load_explicit(&l->next, memory_order_relaxed);
			if (prealloc(h))
				continue;	/* the pool goes below */
			if (h->attr.elem_ops) {
				h->attr.elem_ops->free(h->attr.elem_ops->ctx, l);
				continue;
			}
			/* no reader is left: straight back to the cache */
			if (l->pcpu_obj)
				bpf_mem_cache_free(&h->pcpu_ma, l->pcpu_obj);
			bpf_mem_cache_free(&h->ma, l);
		}
	}
	for (size_t i = 0; h->pool && i < h->pool_elems; i++) {
		struct htab_elem *l = (struct htab_elem *)((char *)h->pool + i * h->elem_size);

		if (l->pcpu_obj)
			bpf_mem_cache_free(&h->pcpu_ma, l->pcpu_obj);
	}
	free(h->pool);
	/* destroy waits for the elements still waiting for a grace period */
	bpf_mem_alloc_destroy(&h->ma);
	bpf_mem_alloc_destroy(&h->pcpu_ma);
	free(h->buckets);
	free(h);
}

/* ---- the map operations ---- */

void *htab_lookup(struct htab *h, const void *key)
{
	struct htab_elem *l = lookup_elem(h, hash_key(h, key), key);

	if (!l)
		return NULL;
	return h->attr.percpu ? bpfmem_this_cpu_ptr(*(void **)l->pcpu_obj) : elem_value(h, l);
}

void *htab_lookup_percpu(struct htab *h, const void *key, int cpu)
{
	struct htab_elem *l;

	if (!h->attr.percpu || cpu < 0 || cpu > bpfmem_nr_cpus())
		return NULL;
	l = lookup_elem(h, hash_key(h, key), key);
	return l ? pcpu_value(l, cpu) : NULL;
}

static int check_flags(const struct htab_elem *old, uint64_t flags)
{
	if (old && flags == BPF_NOEXIST)
		return -EEXIST;
	if (!old && flags == BPF_EXIST)
		return -ENOENT;
	return 0;
}

/* Under the bucket lock: unlink `l`, leaving l->next for the readers standing on it. */
static void unlink_elem(struct bucket *b, struct htab_elem *l)
{
	_Atomic uintptr_t *pprev = &b->head;
	uintptr_t n;

	while ((n = atomic_load_explicit(pprev, memory_order_relaxed)) != (uintptr_t)l)
		pprev = &((struct htab_elem *)n)->next;
	atomic_store_explicit(pprev, atomic_load_explicit(&l->next, memory_order_relaxed),
			      memory_order_release);
}

int htab_update(struct htab *h, const void *key, const void *value, uint64_t flags)
{
	uint32_t hash = hash_key(h, key);
	struct bucket *b = &h->buckets[hash & (h->n_buckets - 1)];
	struct htab_elem *old, *l = NULL;
	int err;

	if (flags > BPF_EXIST)
		return -EINVAL;
	err = spin_lock(&b->lock);
	if (err)
		return err;
	old = lookup_elem(h, hash, key);
	err = check_flags(old, flags);
	if (err)
		goto unlock;
	if (old && h->attr.percpu) {
		/* per-CPU values are updated in place, as in the kernel: no new element */
		memcpy(bpfmem_this_cpu_ptr(*(void **)old->pcpu_obj), value, h->attr.value_size);
		goto unlock;
	}
	l = alloc_elem(h, key, value, hash, !old, &err);
	if (!l)
		goto unlock;
	/* publish the new element first: a reader finds either it or the old one */
	atomic_store_explicit(&l->next, atomic_load_explicit(&b->head, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&b->head, (uintptr_t)l, memory_order_release);
	if (old)
		unlink_elem(b, old);
unlock:
	spin_unlock(&b->lock);
	if (l && old)
		free_elem(h, old);
	return err;
}

int htab_delete(struct htab *h, const void *key)
{
	uint32_t hash = hash_key(h, key);
	struct bucket *b = &h->buckets[hash & (h->n_buckets - 1)];
	struct htab_elem *l;
	int err = spin_lock(&b->lock);

	if (err)
		return err;
	l = lookup_elem(h, hash, key);
	if (l) {
		unlink_elem(b, l);
		atomic_fetch_sub_explicit(&h->count, 1, memory_order_relaxed);
	}
	spin_unlock(&b->lock);
	if (!l)
		return -ENOENT;
	free_elem(h, l);
	return 0;
}

int htab_get_next_key(struct htab *h, const void *key, void *next_key)
{
	uint32_t i = 0;
	int err = -ENOENT;

	bpfmem_rcu_read_lock();
	if (key) {
		uint32_t hash = hash_key(h, key);
		struct htab_elem *l = lookup_elem(h, hash, key);

		if (l) {
			uintptr_t n = atomic_load_explicit(&l->next, memory_order_acquire);

			if (!is_nulls(n)) {
				memcpy(next_key, ((struct htab_elem *)n)->key, h->attr.key_size);
				err = 0;
				goto out;
			}
			i = (hash & (h->n_buckets - 1)) + 1;
		}
		/* a key not in the map: start from the first one, as the kernel does */
	}
	for (; i < h->n_buckets; i++) {
		uintptr_t n = atomic_load_explicit(&h->buckets[i].head, memory_order_acquire);

		if (!is_nulls(n)) {
			memcpy(next_key, ((struct htab_elem *)n)->key, h->attr.key_size);
			err = 0;
			break;
		}
	}
out:
	bpfmem_rcu_read_unlock();
	return err;
}

uint32_t htab_count(const struct htab *h)
{
	return atomic_load_explicit(&h->count, memory_order_relaxed);
}
