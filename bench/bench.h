/* SPDX-License-Identifier: MIT */
/*
 * bpfmem-bench internals: the backend rows, the scenario table, and the line
 * protocol a measuring child uses to hand its numbers to the parent.
 */
#ifndef BPFMEM_BENCH_H
#define BPFMEM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_BATCH 128

enum backend_kind {
	BK_LIMIT,	/* the thread-local free list every row is compared with */
	BK_BPFMEM,	/* the rows under test */
	BK_PEER,	/* other allocators: "best peer" is the best of these */
};

/* Backend capabilities, used by scenarios to decide whether a row applies. */
#define BF_CROSS_THREAD	0x1u	/* may free on another thread than the allocating one */
#define BF_SIGNAL	0x2u	/* worth running in a signal handler */
#define BF_FREE_RCU	0x4u	/* has a deferred (RCU) free */
#define BF_MALLOC	0x8u	/* plain malloc/free: the preloaded library decides */
#define BF_FAST		0x10u	/* used by the fast scenarios (pair, batch128, tail) */
#define BF_HTAB_PREALLOC 0x20u	/* the htab-* scenarios' preallocated map (no allocator) */

struct backend {
	const char *name;
	const char *desc;
	enum backend_kind kind;
	unsigned int flags;
	/* LD_PRELOAD library (NULL: none) and the file name that must then
	 * provide malloc() in the child, checked with dladdr() */
	const char *preload;
	const char *malloc_from;
	/* runs in bpfmem-bench-static, linked with libbpfmem.a: the same calls
	 * without the PLT and with local TLS, to show what the .so costs */
	bool static_lib;
	/* its calls exist only inside its loops (inlined): pair and batch128 only */
	bool loops_only;
	/* why the row cannot run (missing package), NULL when it can */
	const char *(*unavailable)(void);

	/* child side: `fixed` is the object size for fixed-size allocators */
	int (*setup)(size_t fixed);
	void (*teardown)(void);
	void *(*alloc)(size_t size);
	void (*free)(void *p);
	void (*free_rcu)(void *p);
	void (*rcu_barrier)(void);
	/* the hot loops with direct calls, so no row pays an indirect call:
	 * both return elapsed ns and add NULL returns to *nulls */
	uint64_t (*pair_loop)(size_t size, long n, long *nulls);
	uint64_t (*batch_loop)(size_t size, long n, void **v, long *nulls);
};

/*
 * One object's life in the loops: the write makes sure the memory is real
 * and stops the compiler from folding malloc/free pairs away.
 */
#define USE(p, nulls)                                   \
	do {                                            \
		if (__builtin_expect(!(p), 0))          \
			(*(nulls))++;                   \
		else                                    \
			*(volatile char *)(p) = 1;      \
	} while (0)

#define LOOPS(id, ALLOC, FREE)                                                          \
__attribute__((noinline)) uint64_t id##_pair(size_t size, long n, long *nulls)  \
{                                                                                       \
	uint64_t t0 = now_ns();                                                         \
	for (long i = 0; i < n; i++) {                                                  \
		void *p = ALLOC(size);                                                  \
		USE(p, nulls);                                                          \
		if (p)                                                                  \
			FREE(p);                                                        \
	}                                                                               \
	return now_ns() - t0;                                                           \
}                                                                                       \
__attribute__((noinline)) uint64_t id##_batch(size_t size, long n, void **v,    \
						       long *nulls)                     \
{                                                                                       \
	uint64_t t0 = now_ns();                                                         \
	for (long r = 0; r < n; r++) {                                                  \
		for (int i = 0; i < BENCH_MAX_BATCH; i++) {                             \
			v[i] = ALLOC(size);                                             \
			USE(v[i], nulls);                                               \
		}                                                                       \
		for (int i = 0; i < BENCH_MAX_BATCH; i++)                               \
			if (v[i])                                                       \
				FREE(v[i]);                                             \
	}                                                                               \
	return now_ns() - t0;                                                           \
}

/* the rows' shared pieces (backends.c), and the loops of the rows built with
 * BPFMEM_INLINE (backends_inline.c) */
struct bpf_mem_alloc;
extern struct bpf_mem_alloc cache_ma, any_ma;
int cache_setup(size_t fixed);
void cache_teardown(void);
int any_setup(size_t fixed);
void any_teardown(void);
int limit_setup(size_t fixed);
void noop(void);
#define LOOP_DECL(id)									\
	uint64_t id##_pair(size_t size, long n, long *nulls);				\
	uint64_t id##_batch(size_t size, long n, void **v, long *nulls)
LOOP_DECL(limit_inl);
LOOP_DECL(cache_inl);
LOOP_DECL(any_inl);

extern const struct backend backends[];
extern const int nr_backends;
const struct backend *backend_by_name(const char *name);

struct bench_opts {
	bool quick;
	int reps;
	double target_s;	/* time one timed loop should take */
	long xthread_objs;
	long tail_ops;
	long free_rcu_objs;
	double storm_s;
	int storm_hz;
};

/*
 * A scenario runs in a child process, once per repetition and backend, and
 * reports through emit_metric()/emit_note().  New scenarios (the hash-map
 * benchmark) are one more entry in scenarios[] in scenarios.c.
 */
struct scenario {
	const char *name;
	const char *desc;		/* one line: what one number means */
	const char *headline;		/* metric that gets the ratio columns */
	bool repeat;			/* false: run once (survival tests) */
	bool ratio_all;			/* print ratios for every metric, not only the headline */
	bool (*applies)(const struct backend *b);
	int (*run)(const struct backend *b, const struct bench_opts *o);
};

extern const struct scenario scenarios[];
extern const int nr_scenarios;

/* bench/htab_mem.c: the kernel's `bench htab-mem` use cases on examples/htab, one
 * scenario per use case and value size; HTAB_MEM_SCENARIOS are their scenarios[] entries. */
bool htab_mem_rows(const struct backend *b);
#define HTAB_MEM_SCENARIO(uc, size, what)                                               \
	{ "htab-" #uc "-" #size, "htab-mem " #uc ", 4-byte keys, " #size "-byte values: " what \
	  "; kop/s per producer (1 op = 64 map operations), RSS of the process",              \
	  NULL, true, false, htab_mem_rows, run_htab_##uc##_##size }
#define HTAB_MEM_DECLARE(uc, size) \
	int run_htab_##uc##_##size(const struct backend *b, const struct bench_opts *o);
HTAB_MEM_DECLARE(overwrite, 8)
HTAB_MEM_DECLARE(overwrite, 4096)
HTAB_MEM_DECLARE(batch_add_batch_del, 8)
HTAB_MEM_DECLARE(batch_add_batch_del, 4096)
HTAB_MEM_DECLARE(add_del_on_diff_cpu, 8)
HTAB_MEM_DECLARE(add_del_on_diff_cpu, 4096)
#define HTAB_MEM_OW "each producer overwrites its own 64 keys"
#define HTAB_MEM_BATCH "each producer adds its 64 keys, then deletes them"
#define HTAB_MEM_DIFF "producer pairs: one adds 64 keys, the other deletes them, in turns"
#define HTAB_MEM_SCENARIOS                                                      \
	HTAB_MEM_SCENARIO(overwrite, 8, HTAB_MEM_OW),                           \
	HTAB_MEM_SCENARIO(overwrite, 4096, HTAB_MEM_OW),                        \
	HTAB_MEM_SCENARIO(batch_add_batch_del, 8, HTAB_MEM_BATCH),              \
	HTAB_MEM_SCENARIO(batch_add_batch_del, 4096, HTAB_MEM_BATCH),           \
	HTAB_MEM_SCENARIO(add_del_on_diff_cpu, 8, HTAB_MEM_DIFF),               \
	HTAB_MEM_SCENARIO(add_del_on_diff_cpu, 4096, HTAB_MEM_DIFF)

/* owns.c: the bpfmem_owns() query */
bool owns_rows(const struct backend *b);
int run_owns(const struct backend *b, const struct bench_opts *o);

/* Child -> parent protocol, one line each, written with write(2) only so
 * that it works from a watchdog while the heap may be wedged:
 *   M <metric> <unit> <L|H> <value>   (L: lower is better)
 *   N <text>                          note
 */
void emit_metric(const char *name, const char *unit, bool lower_better, double v);
void emit_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t now_ns(void);
/* Resident set of this process, KiB (0 if /proc is unreadable). */
long rss_kib(void);
/* cycle counter for per-call latencies, and its calibration */
uint64_t cycles(void);
double cycles_per_ns(void);

int pin_thread_cpu(int vcpu);

/* footprint.c: the scenario, and its probe process (--footprint-probe) */
int run_footprint(const struct backend *b, const struct bench_opts *o);
bool footprint_rows(const struct backend *b);
int footprint_probe(const char *kind, int ncpus);

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* BPFMEM_BENCH_H */
