// SPDX-License-Identifier: MIT
/*
 * A ubpf host on libbpfmem: runs prog.bpf.o from several threads, each on
 * its own virtual CPU, in ubpf's interpreter and JIT, with bpf_obj_new /
 * bpf_obj_drop and the bounds check from bpfmem_ubpf.c; then the same
 * program on malloc, whose host must keep its own table of live objects to
 * answer the bounds check (here the cheapest one: a per-thread array).
 *
 *	ubpf-host PROG.o [threads] [runs]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ubpf.h>
#include "bpfmem_ubpf.h"

struct ctx {
	unsigned long n;
	unsigned long seed;
};

#define OBJS 8	/* objects per run */

/* ---- the malloc baseline: calloc/free and a table of live objects ---- */

#define TABLE_MAX 64

struct table {
	uint64_t start[TABLE_MAX], end[TABLE_MAX];
	int n;
};

static __thread struct table live;

static uint64_t malloc_obj_new(uint64_t size, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
	void *p;

	if (!size || size > 4088 || live.n == TABLE_MAX || !(p = calloc(1, size)))
		return 0;
	live.start[live.n] = (uint64_t)(uintptr_t)p;
	live.end[live.n++] = (uint64_t)(uintptr_t)p + size;
	return (uint64_t)(uintptr_t)p;
}

static uint64_t malloc_obj_drop(uint64_t ptr, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5)
{
	for (int i = 0; i < live.n; i++) {
		if (live.start[i] == ptr) {
			live.start[i] = live.start[--live.n];
			live.end[i] = live.end[live.n];
			free((void *)(uintptr_t)ptr);
			return 0;
		}
	}
	return (uint64_t)-EINVAL;
}

static bool malloc_bounds_check(void *ctx, uint64_t addr, uint64_t size)
{
	for (int i = 0; i < live.n; i++)
		if (addr >= live.start[i] && addr + size <= live.end[i] && addr + size >= addr)
			return true;
	return false;
}

/* ---- one VM per thread ---- */

static void *elf;
static size_t elf_len;
static int nr_threads = 4;
static long nr_runs = 200000;

enum backend { BPFMEM, MALLOC };
static const char *const backend_name[] = { "libbpfmem", "malloc" };

struct result {
	double ns_interp, ns_jit;
	unsigned long checks, nulls, wrong;
};

static _Atomic unsigned long bounds_calls;

static bool counting_bounds_check(void *ctx, uint64_t addr, uint64_t size)
{
	atomic_fetch_add_explicit(&bounds_calls, 1, memory_order_relaxed);
	return bpfmem_ubpf_bounds_check(ctx, addr, size);
}

static struct ubpf_vm *make_vm(enum backend be, bool count)
{
	struct ubpf_vm *vm = ubpf_create();
	char *err = NULL;

	if (!vm)
		return NULL;
	if (be == BPFMEM) {
		ubpf_register(vm, BPFMEM_UBPF_OBJ_NEW, "bpf_obj_new",
			      as_external_function_t((void *)bpfmem_ubpf_obj_new));
		ubpf_register(vm, BPFMEM_UBPF_OBJ_DROP, "bpf_obj_drop",
			      as_external_function_t((void *)bpfmem_ubpf_obj_drop));
		ubpf_register_data_bounds_check(vm, bpfmem_ubpf_ma(),
						count ? counting_bounds_check : bpfmem_ubpf_bounds_check);
	} else {
		ubpf_register(vm, BPFMEM_UBPF_OBJ_NEW, "bpf_obj_new", malloc_obj_new);
		ubpf_register(vm, BPFMEM_UBPF_OBJ_DROP, "bpf_obj_drop", malloc_obj_drop);
		ubpf_register_data_bounds_check(vm, NULL, malloc_bounds_check);
	}
	if (ubpf_load_elf(vm, elf, elf_len, &err)) {
		fprintf(stderr, "ubpf_load_elf: %s\n", err);
		free(err);
		ubpf_destroy(vm);
		return NULL;
	}
	return vm;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned long expect(const struct ctx *c)
{
	unsigned long sum = 0;

	for (unsigned long i = 0; i < c->n; i++)
		sum += c->seed + 2 * i;
	return sum;
}

/* ns per run of `runs` runs, interpreter (jit == NULL) or JIT */
static double run_loop(struct ubpf_vm *vm, ubpf_jit_fn jit, long runs, struct result *r)
{
	uint64_t t0 = now_ns();

	for (long i = 0; i < runs; i++) {
		struct ctx c = { OBJS, (unsigned long)i };
		uint64_t ret = 0;

		if (jit)
			ret = jit(&c, sizeof(c));
		else if (ubpf_exec(vm, &c, sizeof(c), &ret))
			ret = 0;
		if (ret == (uint64_t)-1)
			r->nulls++;	/* an empty cache: counted, not retried */
		else if (ret != expect(&c))
			r->wrong++;
	}
	return (double)(now_ns() - t0) / (double)runs;
}

struct worker {
	pthread_t thread;
	int cpu;
	enum backend be;
	struct result r;
	int err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ubpf_vm *vm;
	ubpf_jit_fn jit;
	char *err = NULL;

	if (w->be == BPFMEM && bpfmem_thread_attach(w->cpu, 0)) {
		w->err = 1;
		return NULL;
	}
	vm = make_vm(w->be, false);
	jit = vm ? ubpf_compile(vm, &err) : NULL;
	if (!jit) {
		fprintf(stderr, "ubpf_compile: %s\n", err ? err : "no VM");
		free(err);
		w->err = 1;
		return NULL;
	}
	run_loop(vm, NULL, nr_runs / 10, &w->r);	/* warm the caches */
	w->r.ns_interp = run_loop(vm, NULL, nr_runs, &w->r);
	w->r.ns_jit = run_loop(vm, jit, nr_runs, &w->r);
	ubpf_destroy(vm);
	if (w->be == BPFMEM)
		bpfmem_thread_detach();
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int run_backend(enum backend be, double *interp, double *jit)
{
	struct worker *w = calloc(nr_threads, sizeof(*w));
	double ni[64], nj[64];
	unsigned long nulls = 0, wrong = 0;

	for (int i = 0; i < nr_threads; i++) {
		w[i].cpu = i;
		w[i].be = be;
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]))
			return -1;
	}
	for (int i = 0; i < nr_threads; i++) {
		pthread_join(w[i].thread, NULL);
		if (w[i].err)
			return -1;
		ni[i] = w[i].r.ns_interp;
		nj[i] = w[i].r.ns_jit;
		nulls += w[i].r.nulls;
		wrong += w[i].r.wrong;
	}
	qsort(ni, nr_threads, sizeof(double), cmp_double);
	qsort(nj, nr_threads, sizeof(double), cmp_double);
	*interp = ni[nr_threads / 2];
	*jit = nj[nr_threads / 2];
	printf("%-10s %d threads x %ld runs x 2 modes: wrong results %lu, empty-cache runs %lu\n",
	       backend_name[be], nr_threads, nr_runs, wrong, nulls);
	free(w);
	return wrong ? -1 : 0;
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	void *buf;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(*len);
	if (buf && fread(buf, 1, *len, f) != *len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	double bi, bj, mi, mj;
	struct ubpf_vm *vm;
	struct ctx c = { OBJS, 1000 };
	uint64_t ret = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PROG.o [threads] [runs]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		nr_threads = atoi(argv[2]);
	if (argc > 3)
		nr_runs = atol(argv[3]);
	if (nr_threads < 1 || nr_threads > 64 || nr_runs < 10)
		return 2;
	elf = read_file(argv[1], &elf_len);
	if (!elf || bpfmem_ubpf_init()) {
		fprintf(stderr, "cannot read %s or set up the allocator\n", argv[1]);
		return 1;
	}
	/* one run with the bounds checks counted */
	vm = make_vm(BPFMEM, true);
	if (!vm || bpfmem_thread_attach(0, 0) || ubpf_exec(vm, &c, sizeof(c), &ret))
		return 1;
	printf("one run: %d objects, result %lu (expected %lu), %lu bounds checks answered by "
	       "bpfmem_owns\n", OBJS, (unsigned long)ret, expect(&c),
	       atomic_load(&bounds_calls));
	ubpf_destroy(vm);
	bpfmem_thread_detach();
	if (ret != expect(&c))
		return 1;
	if (run_backend(BPFMEM, &bi, &bj) || run_backend(MALLOC, &mi, &mj))
		return 1;
	printf("ns per run (median of threads)   interpreter   JIT\n");
	printf("  libbpfmem + bpfmem_owns        %11.0f %5.0f\n", bi, bj);
	printf("  malloc + table of live objects %11.0f %5.0f\n", mi, mj);
	printf("  ratio libbpfmem / malloc       %11.2f %5.2f\n", bi / mi, bj / mj);
	bpfmem_ubpf_exit();
	free(elf);
	return 0;
}
