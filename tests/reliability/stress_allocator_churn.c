// SPDX-License-Identifier: MIT
/*
 * Allocator churn: allocators of every kind are created, used, left with
 * RCU frees pending and destroyed in a loop, while other threads keep their
 * own allocators busy with RCU frees.  Destroy must neither free memory a
 * pending callback still uses nor leak, and accounting returns to zero.
 */
#include "rel_common.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#define NR_USERS	2
#define OBJS		64

struct user {
	pthread_t thread;
	struct bpf_mem_alloc ma;
	unsigned long ops, bad;
};

static struct user users[NR_USERS];
static atomic_bool stop;

static void *user_main(void *arg)
{
	struct user *u = arg;
	void *objs[OBJS];

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int i = 0; i < OBJS; i++) {
			objs[i] = bpf_mem_alloc(&u->ma, rel_class_req[i % 11]);
			if (objs[i])
				rel_stamp(objs[i], rel_class_req[i % 11], (uint64_t)i);
		}
		for (int i = 0; i < OBJS; i++) {
			if (!objs[i])
				continue;
			if (rel_check(objs[i], rel_class_req[i % 11], (uint64_t)i))
				u->bad++;
			/* mostly RCU: callbacks are pending all the time */
			i % 4 ? bpf_mem_free_rcu(&u->ma, objs[i]) : bpf_mem_free(&u->ma, objs[i]);
			u->ops += 2;
		}
	}
	return NULL;
}

/* Create allocator number n (kind n % 4), use it, leave RCU frees pending, destroy. */
static unsigned long churn_one(unsigned long n, struct bpfmem_objcg *cg, unsigned long *bad)
{
	static struct bpf_mem_alloc ma;
	struct bpfmem_objcg *old = bpfmem_objcg_set_current(cg);
	unsigned long ops = 0;
	void *objs[OBJS];
	int k = (int)(n % 4), ret;

	switch (k) {
	case 0: ret = bpf_mem_alloc_init(&ma, 0, false); break;
	case 1: ret = bpf_mem_alloc_init(&ma, 24 + (int)(n * 40 % 5000), false); break;
	case 2: ret = bpf_mem_alloc_init(&ma, 64, true); break;
	default:
		ret = bpf_mem_alloc_percpu_init(&ma, cg);
		if (!ret)
			ret = bpf_mem_alloc_percpu_unit_init(&ma, 128);
		break;
	}
	bpfmem_objcg_set_current(old);
	assert_int_equal(ret, 0);
	for (int i = 0; i < OBJS; i++) {
		objs[i] = k == 0 ? bpf_mem_alloc(&ma, rel_class_req[i % 11]) :
			  k == 3 ? bpf_mem_alloc(&ma, 128) : bpf_mem_cache_alloc(&ma);
		if (objs[i] && k == 0)
			rel_stamp(objs[i], rel_class_req[i % 11], (uint64_t)i);
		ops++;
	}
	for (int i = 0; i < OBJS; i++) {
		if (!objs[i])
			continue;
		if (k == 0 && rel_check(objs[i], rel_class_req[i % 11], (uint64_t)i))
			(*bad)++;
		if (k == 0 || k == 3)
			i & 1 ? bpf_mem_free_rcu(&ma, objs[i]) : bpf_mem_free(&ma, objs[i]);
		else
			i & 1 ? bpf_mem_cache_free_rcu(&ma, objs[i]) : bpf_mem_cache_free(&ma, objs[i]);
		ops++;
	}
	/* no barrier: destroy meets the RCU callbacks still in flight */
	bpf_mem_alloc_destroy(&ma);
	return ops;
}

static void test_allocator_churn_with_pending_rcu_leaks_nothing(void **state)
{
	long backend_before = rel_backend_outstanding();
	struct bpfmem_objcg *cg = bpfmem_objcg_create(0);
	unsigned long created = 0, ops = 0, bad = 0;
	double t0 = rel_now(), seconds = rel_seconds(3);

	(void)state;
	rel_count_warnings();
	assert_non_null(cg);
	atomic_store(&stop, false);
	for (int i = 0; i < NR_USERS; i++) {
		assert_int_equal(bpf_mem_alloc_init(&users[i].ma, 0, false), 0);
		assert_int_equal(pthread_create(&users[i].thread, NULL, user_main, &users[i]), 0);
	}
	while (rel_now() - t0 < seconds) {
		ops += churn_one(created, cg, &bad);
		created++;
		/* every byte the destroyed allocators charged came back */
		assert_int_equal(bpfmem_objcg_usage(cg), 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < NR_USERS; i++) {
		assert_int_equal(pthread_join(users[i].thread, NULL), 0);
		ops += users[i].ops;
		bad += users[i].bad;
		bpf_mem_alloc_destroy(&users[i].ma);
	}
	rel_report("allocator_churn", "allocators_created=%lu cfg_threads=%d ops=%lu seconds=%.1f bad=%lu",
		   created, NR_USERS + 1, ops, rel_now() - t0, bad);
	assert_int_equal(bad, 0);
	assert_true(created > 0);
	bpfmem_objcg_put(cg);
	assert_int_equal(rel_backend_outstanding(), backend_before);
	assert_int_equal(atomic_load(&rel_warnings), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allocator_churn_with_pending_rcu_leaks_nothing),
	};

	/* a hang fails with a message instead of running into the ctest timeout */
	rel_watchdog(100, "stress_allocator_churn: still running after 100 s");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
