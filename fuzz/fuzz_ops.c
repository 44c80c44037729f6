// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the input is a sequence of operations (init of every
 * allocator kind, alloc, free, free_rcu, raw_free, destroy, attach/detach,
 * a signal whose handler allocates and frees, stats, bad inputs, backend
 * faults) run against a shadow model of the live objects.  Any result the
 * model forbids traps, so the fuzzer reports it with the input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpfmem.h>
#include "kernel/slab.h"

#define NR_MA		4
#define MAX_LIVE	128
#define MAX_OPS		512

enum kind { K_NONE, K_ANY, K_FIXED, K_PCPU, K_PCPU_ANY };

static const int class_unit[11] = { 96, 192, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };

struct obj {
	void *p;
	size_t size;		/* writable bytes (per copy for per-CPU objects) */
	size_t span;		/* bytes at p that are the caller's: checked for overlap */
	uint64_t tag;
};

struct shadow {
	struct bpf_mem_alloc ma;
	enum kind kind;
	int size;		/* fixed and per-CPU fixed: the init size */
	bool class_ready[11];	/* per-CPU any-size: classes set up */
	struct obj live[MAX_LIVE];
	int nlive;
};

static struct shadow sh[NR_MA];
static const uint8_t *in;
static size_t in_len, in_pos;
static uint64_t next_tag;
static bool faults;		/* backend faults on: NULL and -ENOMEM allowed */
static long warnings;

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "fuzz_ops: check failed: %s (line %d)\n", #cond, __LINE__); \
			__builtin_trap();				\
		}							\
	} while (0)

static unsigned int byte(void)
{
	return in_pos < in_len ? in[in_pos++] : 0;
}

static unsigned int u16(void)
{
	return byte() | byte() << 8;
}

static void on_warning(const char *msg, void *arg)
{
	(void)arg;
	(void)msg;
	warnings++;
}

/* ---- object contents: every word derived from address and tag ---- */

static uint64_t word(const void *p, uint64_t tag, size_t i)
{
	return ((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) ^ tag ^ (i << 32);
}

static void *obj_mem(const struct shadow *s, const struct obj *o)
{
	/* per-CPU objects: the data lives in the copies; use CPU 0's */
	if (s->kind == K_PCPU || s->kind == K_PCPU_ANY)
		return bpfmem_per_cpu_ptr(*(void **)o->p, 0);
	return o->p;
}

static void stamp(const struct shadow *s, const struct obj *o)
{
	uint64_t *w = obj_mem(s, o);

	for (size_t i = 0; i < o->size / 8; i++)
		w[i] = word(o->p, o->tag, i);
}

static void verify(const struct shadow *s, const struct obj *o)
{
	const uint64_t *w = obj_mem(s, o);

	for (size_t i = 0; i < o->size / 8; i++)
		CHECK(w[i] == word(o->p, o->tag, i));
}

/* A new object overlaps no live one (no double hand-out). */
static void check_distinct(void *p, size_t size)
{
	for (int m = 0; m < NR_MA; m++)
		for (int i = 0; i < sh[m].nlive; i++) {
			char *q = sh[m].live[i].p;
			size_t qs = sh[m].live[i].span;

			CHECK((char *)p + size <= q || q + qs <= (char *)p);
		}
}

static void track(struct shadow *s, void *p, size_t size)
{
	/* per-CPU: the caller's part is the per-CPU pointer; the copies live elsewhere */
	size_t span = s->kind == K_PCPU || s->kind == K_PCPU_ANY ? 8 : size ? size : 1;
	struct obj *o;

	CHECK(((uintptr_t)p & 7) == 0);
	check_distinct(p, span);
	if (s->nlive == MAX_LIVE) {
		/* model full: give it straight back */
		if (s->kind == K_ANY || s->kind == K_PCPU_ANY)
			bpf_mem_free(&s->ma, p);
		else
			bpf_mem_cache_free(&s->ma, p);
		return;
	}
	o = &s->live[s->nlive++];
	o->p = p;
	o->size = size;
	o->span = span;
	o->tag = ++next_tag;
	stamp(s, o);
}

/* ---- operations ---- */

static int class_of(size_t size)
{
	if (!size || size > 4096)
		return -1;
	for (int best = -1, i = 0; i < 11; i++) {
		if (class_unit[i] >= (int)size && (best < 0 || class_unit[i] < class_unit[best]))
			best = i;
		if (i == 10)
			return best;
	}
	return -1;
}

static void op_init(struct shadow *s, enum kind k)
{
	bool busy = s->kind != K_NONE;
	int size = (int)u16() - 1024;	/* negative and huge sizes too */
	int ret;

	switch (k) {
	case K_ANY:
		ret = bpf_mem_alloc_init(&s->ma, 0, false);
		break;
	case K_FIXED:
		ret = bpf_mem_alloc_init(&s->ma, size, false);
		if (!busy && (size < 0)) {
			CHECK(ret == -EINVAL);
			return;
		}
		break;
	case K_PCPU:
		ret = bpf_mem_alloc_init(&s->ma, size, true);
		if (!busy && (size <= 0 || size > 4096)) {
			CHECK(ret == -EINVAL);
			return;
		}
		break;
	default:
		ret = bpf_mem_alloc_percpu_init(&s->ma, NULL);
		break;
	}
	if (busy) {
		/* initialising a live allocator is refused, and it stays usable */
		CHECK(ret == -EBUSY || ret == -EINVAL);
		return;
	}
	if (faults && ret == -ENOMEM)
		return;
	CHECK(ret == 0);
	if (k == K_FIXED && size == 0)
		k = K_ANY;	/* size 0 asks for the any-size allocator */
	s->kind = k;
	s->size = k == K_FIXED || k == K_PCPU ? size : 0;
	memset(s->class_ready, 0, sizeof(s->class_ready));
}

static void op_unit_init(struct shadow *s)
{
	int size = (int)u16() - 16;
	int ret = bpf_mem_alloc_percpu_unit_init(&s->ma, size);
	int c = class_of(size < 0 ? 0 : (size_t)size);

	if (s->kind != K_PCPU_ANY) {
		CHECK(ret == -EINVAL);
		return;
	}
	if (c < 0) {
		CHECK(ret == -EINVAL);
		return;
	}
	if (faults && ret == -ENOMEM)
		return;
	CHECK(ret == 0);
	s->class_ready[c] = true;
}

static void op_alloc(struct shadow *s, bool kernel)
{
	size_t size = u16() % 4200;
	void *p;

	switch (s->kind) {
	case K_NONE:
		CHECK(bpf_mem_alloc(&s->ma, size) == NULL);
		CHECK(bpf_mem_cache_alloc(&s->ma) == NULL);
		return;
	case K_ANY:
		p = bpf_mem_alloc(&s->ma, size);
		if (!size || size > BPFMEM_ALLOC_SIZE_MAX - 8) {
			CHECK(p == NULL);
			return;
		}
		break;
	case K_PCPU_ANY: {
		int c = class_of(size);

		p = bpf_mem_alloc(&s->ma, size);
		if (c < 0 || !s->class_ready[c]) {
			/* a class never set up hands out nothing */
			CHECK(p == NULL);
			return;
		}
		break;
	}
	default:
		/* fixed-size entry points refuse an any-size allocator and vice versa */
		CHECK(bpf_mem_alloc(&s->ma, 8) == NULL);
		p = bpf_mem_cache_alloc_flags(&s->ma, kernel ? BPFMEM_GFP_KERNEL : BPFMEM_GFP_NOWAIT);
		if (kernel && !faults)
			CHECK(p != NULL);	/* GFP_KERNEL falls back to the backend */
		size = (size_t)s->size;
		break;
	}
	if (p)
		track(s, p, size);
}

/* how: 0 free, 1 free_rcu, 2 raw_free */
static void op_free(struct shadow *s, int how)
{
	unsigned int idx = byte();
	struct obj o;

	if (!s->nlive) {
		/* freeing NULL is a no-op everywhere */
		bpf_mem_free(&s->ma, NULL);
		bpf_mem_cache_free(&s->ma, NULL);
		bpf_mem_free_rcu(&s->ma, NULL);
		bpf_mem_cache_raw_free(NULL);
		return;
	}
	idx %= (unsigned int)s->nlive;
	o = s->live[idx];
	s->live[idx] = s->live[--s->nlive];
	verify(s, &o);
	if (how == 2) {
		bpf_mem_cache_raw_free(o.p);
	} else if (s->kind == K_ANY || s->kind == K_PCPU_ANY) {
		how ? bpf_mem_free_rcu(&s->ma, o.p) : bpf_mem_free(&s->ma, o.p);
	} else {
		how ? bpf_mem_cache_free_rcu(&s->ma, o.p) : bpf_mem_cache_free(&s->ma, o.p);
	}
}

static void destroy(struct shadow *s)
{
	long before = warnings;

	while (s->nlive)
		op_free(s, 0);
	bpf_mem_alloc_destroy(&s->ma);
	/* nothing outstanding: no leak report */
	CHECK(warnings == before);
	/* destroy leaves it zeroed: a second destroy is a no-op, allocation NULL */
	bpf_mem_alloc_destroy(&s->ma);
	CHECK(bpf_mem_alloc(&s->ma, 8) == NULL);
	CHECK(bpf_mem_cache_alloc(&s->ma) == NULL);
	s->kind = K_NONE;
}

static void op_stats(struct shadow *s)
{
	int n = bpfmem_nr_size_classes(&s->ma);
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };
	int idx = (int)byte() - 4;
	int ret = bpfmem_cache_stats(&s->ma, idx, &st);

	if (s->kind == K_NONE) {
		CHECK(n == 0);
		CHECK(ret == -EINVAL);
		return;
	}
	CHECK(n == (s->kind == K_ANY || s->kind == K_PCPU_ANY ? 11 : 1));
	if (idx < 0 || idx >= n) {
		CHECK(ret == -EINVAL);
		return;
	}
	if (s->kind == K_PCPU_ANY && !s->class_ready[idx]) {
		CHECK(ret == -ENOENT);
		return;
	}
	CHECK(ret == 0);
	CHECK(st.backend_allocs >= st.backend_frees);
	CHECK(st.low_watermark >= 1 && st.low_watermark < st.high_watermark);
	CHECK(st.batch >= 1);
	if (s->kind == K_ANY)
		CHECK((int)st.unit_size == class_unit[idx]);
	else if (s->kind == K_FIXED)
		CHECK((int)st.unit_size == s->size + 8);
	if (s->kind == K_PCPU || s->kind == K_PCPU_ANY)
		CHECK(st.low_watermark == 1 && st.high_watermark == 3);
	else if (st.unit_size <= 256)
		CHECK(st.low_watermark == 32 && st.high_watermark == 96);
	/* the bad struct size is refused */
	st.sz = 8;
	CHECK(bpfmem_cache_stats(&s->ma, idx, &st) == -EINVAL);
}

static void op_bad_inputs(void)
{
	struct bpf_mem_alloc junk;
	size_t size = u16();

	/* an uninitialised allocator full of garbage: undefined behaviour for
	 * the allocation and free calls, as in the kernel (debug builds report
	 * it); the process-context calls reject it */
	memset(&junk, (int)byte() | 1, sizeof(junk));
	CHECK(bpfmem_nr_size_classes(&junk) == 0);
	CHECK(bpf_mem_alloc_percpu_unit_init(&junk, 8) == -EINVAL);
	bpf_mem_alloc_destroy(&junk);
	/* zeroed: not initialised */
	memset(&junk, 0, sizeof(junk));
	CHECK(bpf_mem_alloc(&junk, 16) == NULL);
	CHECK(bpf_mem_cache_alloc(&junk) == NULL);
	CHECK(bpf_mem_alloc(NULL, 16) == NULL);
	CHECK(bpf_mem_cache_alloc(NULL) == NULL);
	CHECK(bpf_mem_cache_alloc_flags(NULL, BPFMEM_GFP_KERNEL) == NULL);
	bpf_mem_free(NULL, NULL);
	bpf_mem_alloc_destroy(NULL);
	CHECK(bpf_mem_alloc_init(NULL, 0, false) == -EINVAL);
	CHECK(bpf_mem_alloc_percpu_init(NULL, NULL) == -EINVAL);
	CHECK(bpf_mem_alloc_percpu_unit_init(NULL, 8) == -EINVAL);
	CHECK(bpfmem_nr_size_classes(NULL) < 0);
	CHECK(bpf_mem_alloc_check_size(false, size) == (size > 4088 ? -E2BIG : 0));
	CHECK(bpf_mem_alloc_check_size(true, size) == (size > 4096 ? -E2BIG : 0));
	CHECK(bpfmem_per_cpu_ptr(NULL, 0) == NULL);
}

static void op_attach(void)
{
	int cpu = (int)byte() - 8;
	/* never BPFMEM_ATTACH_PIN: it would pin the fuzzer; 0x2 is an unknown flag */
	unsigned int flags = byte() & 2;
	int ret = bpfmem_thread_attach(cpu, flags);

	if (cpu < 0 || cpu >= bpfmem_nr_cpus() || flags) {
		CHECK(ret == -EINVAL);
		return;
	}
	/* single-threaded: no other live thread owns it */
	CHECK(ret == 0);
	CHECK(bpfmem_current_cpu() == cpu);
}

/* ---- signals: the handler allocates, checks and frees ---- */

static volatile int sig_target;
static volatile size_t sig_size;
static volatile int sig_bad;

static void handler(int sig)
{
	struct shadow *s = &sh[sig_target];
	void *p;

	(void)sig;
	if (s->kind == K_ANY) {
		p = bpf_mem_alloc(&s->ma, sig_size);
		if (p) {
			memset(p, 0x5a, sig_size);
			bpf_mem_free(&s->ma, p);
		}
	} else if (s->kind == K_FIXED || s->kind == K_PCPU) {
		p = bpf_mem_cache_alloc(&s->ma);
		if (p)
			bpf_mem_cache_free(&s->ma, p);
	}
	/* the handler also frees an object the interrupted code held */
	if (s->nlive && (s->kind == K_ANY || s->kind == K_FIXED)) {
		struct obj *o = &s->live[--s->nlive];
		const uint64_t *w = o->p;

		for (size_t i = 0; i < o->size / 8; i++)
			sig_bad |= w[i] != word(o->p, o->tag, i);
		if (s->kind == K_ANY)
			bpf_mem_free(&s->ma, o->p);
		else
			bpf_mem_cache_free(&s->ma, o->p);
	}
}

static void op_signal(int m)
{
	sig_target = m;
	sig_size = 1 + byte() * 16;
	raise(SIGUSR1);
	CHECK(!sig_bad);
}

/* ---- driver ---- */

static void setup_once(void)
{
	static bool done;
	struct sigaction sa = { .sa_handler = handler };

	if (done)
		return;
	done = true;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	bpfmem_set_warn_handler(on_warning, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slab_stats before, after;

	setup_once();
	in = data;
	in_len = size;
	in_pos = 0;
	slab_get_stats(&before);
	for (int n = 0; n < MAX_OPS && in_pos < in_len; n++) {
		unsigned int op = byte();
		struct shadow *s = &sh[(op >> 5) % NR_MA];

		switch (op & 31) {
		case 0: case 1: op_init(s, K_ANY); break;
		case 2: op_init(s, K_FIXED); break;
		case 3: op_init(s, K_PCPU); break;
		case 4: op_init(s, K_PCPU_ANY); break;
		case 5: op_unit_init(s); break;
		case 6: case 7: case 8: case 9: op_alloc(s, false); break;
		case 10: op_alloc(s, true); break;
		case 11: case 12: case 13: op_free(s, 0); break;
		case 14: op_free(s, 1); break;
		case 15: op_free(s, 2); break;
		case 16: if (s->kind != K_NONE) destroy(s); else bpf_mem_alloc_destroy(&s->ma); break;
		case 17: op_attach(); break;
		case 18: bpfmem_thread_detach(); CHECK(bpfmem_current_cpu() == -1); break;
		case 19: op_signal((op >> 5) % NR_MA); break;
		case 20: op_stats(s); break;
		case 21: op_bad_inputs(); break;
		case 22:
			/* backend faults on or off: every nth allocation fails */
			faults = byte() & 1;
			slab_fail_every(faults ? 1 + byte() % 8 : 0);
			break;
		default:
			/* verify every live object of this allocator */
			for (int i = 0; i < s->nlive; i++)
				verify(s, &s->live[i]);
			break;
		}
	}
	slab_fail_every(0);
	faults = false;
	for (int m = 0; m < NR_MA; m++)
		if (sh[m].kind != K_NONE)
			destroy(&sh[m]);
	slab_get_stats(&after);
	/* every destroyed allocator gave the backend back all it took */
	CHECK(after.allocs - before.allocs == after.frees - before.frees);
	CHECK(warnings == 0);
	return 0;
}
