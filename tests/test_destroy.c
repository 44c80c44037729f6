/* SPDX-License-Identifier: MIT */
/*
 * Teardown: destroy reports leaked objects with their count, completes with
 * RCU callbacks in flight and gives the backend back everything; frees made
 * before a barrier are done when it returns.
 */
#include "helpers.h"

#include <stdlib.h>

/* The first number in a message, -1 if none. */
static long first_number(const char *msg)
{
	while (*msg && (*msg < '0' || *msg > '9'))
		msg++;
	return *msg ? strtol(msg, NULL, 10) : -1;
}

/*
 * Leaked objects stay leaked after destroy, in backend chunks that are
 * never unmapped while a unit is out (lib/kernel/slab.c): still writable.
 */
static void touch_leaked(void *p)
{
	memset(p, 0x5a, sizeof(void *));
}

static void test_destroy_reports_leaked_objects_with_their_count(void **state)
{
	static struct bpf_mem_alloc ma;
	struct t_warn_log log;
	void *p[3];

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	for (int i = 0; i < 3; i++) {
		p[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(p[i]);
	}
	t_warn_start(&log);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(t_warn_stop(&log), 1);
	assert_int_equal(first_number(log.msg[0]), 3);
	for (int i = 0; i < 3; i++)
		touch_leaked(p[i]);
}

static void test_destroy_counts_leaks_over_every_size_class(void **state)
{
	static struct bpf_mem_alloc ma;
	struct t_warn_log log;
	void *p[NUM_CACHES];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < NUM_CACHES; i++) {
		p[i] = bpf_mem_alloc(&ma, bpf_mem_sizes[i] - T_HDR);
		assert_non_null(p[i]);
	}
	/* one given back: ten leaked */
	bpf_mem_free(&ma, p[0]);
	t_warn_start(&log);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(t_warn_stop(&log), 1);
	assert_int_equal(first_number(log.msg[0]), NUM_CACHES - 1);
	for (int i = 1; i < NUM_CACHES; i++)
		touch_leaked(p[i]);
}

static void test_destroy_reports_a_single_leaked_object(void **state)
{
	static struct bpf_mem_alloc ma;
	struct t_warn_log log;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 8192, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	t_warn_start(&log);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(t_warn_stop(&log), 1);
	assert_int_equal(first_number(log.msg[0]), 1);
	touch_leaked(p);
}

static void test_destroy_without_leaks_warns_nothing(void **state)
{
	static struct bpf_mem_alloc ma;
	struct t_warn_log log;
	void *p[200];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < 200; i++) {
		p[i] = bpf_mem_alloc(&ma, 1 + i * 20);
		assert_non_null(p[i]);
		irq_work_flush();
	}
	for (int i = 0; i < 200; i++) {
		if (i % 2)
			bpf_mem_free(&ma, p[i]);
		else
			bpf_mem_free_rcu(&ma, p[i]);
	}
	t_warn_start(&log);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(t_warn_stop(&log), 0);
}

/*
 * What the backend handed out since `s0` has all come back.  Destroy may
 * leave its wait for RCU callbacks to a background thread (SPEC); the
 * barrier covers that deferred part.
 */
static void assert_backend_balanced(const struct slab_stats *s0)
{
	struct slab_stats s1;

	bpfmem_rcu_barrier();
	s1 = t_slab();

	assert_int_equal(s1.allocs - s0->allocs, s1.frees - s0->frees);
}

static void test_destroy_with_free_rcu_in_flight_returns_everything(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p[64];

	for (int round = 0; round < 20; round++) {
		struct slab_stats s0 = t_slab();

		assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
		for (int i = 0; i < 64; i++) {
			p[i] = bpf_mem_alloc(&ma, 1 + (i * 67) % 4088);
			assert_non_null(p[i]);
			irq_work_flush();	/* large classes hold only 1 at first */
		}
		for (int i = 0; i < 64; i++)
			bpf_mem_free_rcu(&ma, p[i]);
		/* odd rounds: the callbacks are queued; even: the refill may not have run */
		if (round % 2)
			irq_work_flush();
		bpf_mem_alloc_destroy(&ma);
		assert_backend_balanced(&s0);
	}
}

static void test_destroy_of_fixed_and_percpu_allocators_returns_everything(void **state)
{
	static struct bpf_mem_alloc fixed, pcpu;
	struct slab_stats s0 = t_slab();
	void *p[40], *q[40];

	assert_int_equal(bpf_mem_alloc_init(&fixed, 200, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&pcpu, 200, true), 0);
	for (int i = 0; i < 40; i++) {
		p[i] = bpf_mem_cache_alloc_flags(&fixed, BPFMEM_GFP_KERNEL);
		q[i] = bpf_mem_cache_alloc_flags(&pcpu, BPFMEM_GFP_KERNEL);
		assert_non_null(p[i]);
		assert_non_null(q[i]);
	}
	for (int i = 0; i < 40; i++) {
		if (i % 3) {
			bpf_mem_cache_free(&fixed, p[i]);
			bpf_mem_cache_free_rcu(&pcpu, q[i]);
		} else {
			bpf_mem_cache_free_rcu(&fixed, p[i]);
			bpf_mem_cache_free(&pcpu, q[i]);
		}
	}
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&pcpu);
	assert_backend_balanced(&s0);
}

struct cpu_user {
	struct bpf_mem_alloc *ma;
	int cpu;
};

/* Leaves objects of several classes cached on its CPU, then exits. */
static void *use_cpu_and_exit(void *arg)
{
	struct cpu_user *u = arg;
	void *p[64];

	if (bpfmem_thread_attach(u->cpu, 0))
		return NULL;
	for (int i = 0; i < 64; i++) {
		p[i] = bpf_mem_alloc(u->ma, 1 + (i * 131) % 4088);
		irq_work_flush();
	}
	for (int i = 0; i < 64; i++) {
		if (i % 4)
			bpf_mem_free(u->ma, p[i]);
		else
			bpf_mem_free_rcu(u->ma, p[i]);
	}
	return NULL;
}

static void test_destroy_returns_objects_cached_on_every_cpu(void **state)
{
	static struct bpf_mem_alloc ma;
	struct cpu_user u[4];
	struct slab_stats s0 = t_slab();
	pthread_t t[4];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < 4; i++) {
		u[i] = (struct cpu_user){ .ma = &ma, .cpu = 3 + i };
		assert_int_equal(pthread_create(&t[i], NULL, use_cpu_and_exit, &u[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	bpf_mem_alloc_destroy(&ma);
	assert_backend_balanced(&s0);
}

static void test_rcu_barrier_after_free_rcu_returns_the_objects(void **state)
{
	static struct bpf_mem_alloc ma;
	unsigned long frees0;
	void *p[20];

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	for (int i = 0; i < 20; i++) {
		p[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(p[i]);
		irq_work_flush();
	}
	frees0 = t_stats(&ma, 0).backend_frees;
	for (int i = 0; i < 20; i++)
		bpf_mem_cache_free_rcu(&ma, p[i]);
	bpfmem_rcu_barrier();
	/* ready for reuse by their cache, or (no slot free) back to the backend */
	for (int i = 0; i < 20; i++)
		frees0 -= t_ready_holds(t_cache(&ma, 0, 0), p[i]);
	assert_int_equal(t_stats(&ma, 0).backend_frees, frees0 + 20);
	bpf_mem_alloc_destroy(&ma);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_destroy_reports_leaked_objects_with_their_count),
		cmocka_unit_test(test_destroy_counts_leaks_over_every_size_class),
		cmocka_unit_test(test_destroy_reports_a_single_leaked_object),
		cmocka_unit_test(test_destroy_without_leaks_warns_nothing),
		cmocka_unit_test(test_destroy_with_free_rcu_in_flight_returns_everything),
		cmocka_unit_test(test_destroy_of_fixed_and_percpu_allocators_returns_everything),
		cmocka_unit_test(test_destroy_returns_objects_cached_on_every_cpu),
		cmocka_unit_test(test_rcu_barrier_after_free_rcu_returns_the_objects),
	};

	return t_run(tests);
}
