/* SPDX-License-Identifier: MIT */
/*
 * Virtual CPUs: how many there are, implicit and explicit attach, ownership,
 * pinning, release at detach and thread exit, and the objects cached on a
 * virtual CPU surviving its owner.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "kernel/cpu.h"
#include "kernel/irq_work.h"
#include "kernel/slab.h"
#include "helpers.h"

#define OBJ_SIZE 64


static int setup(void **state)
{
	(void)state;
	atomic_store(&t_warnings, 0);
	bpfmem_set_warn_handler(t_count_warning, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bpfmem_set_warn_handler(NULL, NULL);
	return 0;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static int cpus_in_use(void)
{
	int n = 0;

	for (int c = 0; c < bpfmem_nr_cpus(); c++)
		n += cpu_in_use(c);
	return n;
}

/*
 * A virtual CPU's first allocations may find its cache empty while its
 * refill is in flight (NULL is then a valid answer): wait for the refill
 * work and try again.
 */
static void *cache_alloc_wait(struct bpf_mem_alloc *ma)
{
	void *obj = NULL;

	for (int i = 0; i < 100 && !(obj = bpf_mem_cache_alloc(ma)); i++)
		irq_work_flush();
	return obj;
}

static long slab_outstanding(void)
{
	struct slab_stats st;

	slab_get_stats(&st);
	return st.allocs - st.frees;
}

/* ---- how many ---- */

static void test_nr_cpus_default_is_four_per_configured_cpu_but_at_least_64(void **state)
{
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	long expect = 4 * conf > 64 ? 4 * conf : 64;

	(void)state;
	assert_int_equal(bpfmem_nr_cpus(), expect);
}

/* ---- implicit attach ---- */

struct probe {
	int before, again, after;
	int in_use_before, in_use_after;
	struct bpf_mem_alloc *ma;
	void *obj;
};

static void *current_cpu_only(void *arg)
{
	struct probe *p = arg;

	p->in_use_before = cpus_in_use();
	p->before = bpfmem_current_cpu();
	p->again = bpfmem_current_cpu();
	p->in_use_after = cpus_in_use();
	return NULL;
}

static void test_current_cpu_is_minus_one_on_fresh_thread_and_does_not_attach(void **state)
{
	struct probe p = { 0 };

	(void)state;
	run_thread(current_cpu_only, &p);
	assert_int_equal(p.before, -1);
	assert_int_equal(p.again, -1);
	assert_int_equal(p.in_use_after, p.in_use_before);
}

static void *alloc_first(void *arg)
{
	struct probe *p = arg;

	p->before = bpfmem_current_cpu();
	p->obj = cache_alloc_wait(p->ma);
	p->after = bpfmem_current_cpu();
	p->in_use_after = p->after >= 0 && cpu_in_use(p->after);
	bpf_mem_cache_free(p->ma, p->obj);
	return NULL;
}

static void test_first_alloc_attaches_implicitly(void **state)
{
	static struct bpf_mem_alloc ma;
	struct probe p = { .ma = &ma };

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	run_thread(alloc_first, &p);
	assert_non_null(p.obj);
	assert_int_equal(p.before, -1);
	assert_in_range(p.after, 0, bpfmem_nr_cpus() - 1);
	assert_int_equal(p.in_use_after, 1);
	bpf_mem_alloc_destroy(&ma);
}

static void *free_first(void *arg)
{
	struct probe *p = arg;

	p->before = bpfmem_current_cpu();
	bpf_mem_cache_free(p->ma, p->obj);
	p->after = bpfmem_current_cpu();
	p->in_use_after = p->after >= 0 && cpu_in_use(p->after);
	return NULL;
}

static void test_first_free_attaches_implicitly(void **state)
{
	static struct bpf_mem_alloc ma;
	struct probe p = { .ma = &ma };

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	p.obj = bpf_mem_cache_alloc(&ma);
	assert_non_null(p.obj);
	run_thread(free_first, &p);
	assert_int_equal(p.before, -1);
	assert_in_range(p.after, 0, bpfmem_nr_cpus() - 1);
	assert_int_equal(p.in_use_after, 1);
	bpf_mem_alloc_destroy(&ma);
}

static void *alloc_and_exit(void *arg)
{
	struct probe *p = arg;

	bpf_mem_cache_free(p->ma, bpf_mem_cache_alloc(p->ma));
	p->after = bpfmem_current_cpu();
	return NULL;
}

struct attach_req {
	int cpu;
	unsigned int flags;
	int ret;
	int current;
	sem_t attached, release;	/* used by the owner variants only */
};

static void *attach_once(void *arg)
{
	struct attach_req *r = arg;

	r->ret = bpfmem_thread_attach(r->cpu, r->flags);
	r->current = bpfmem_current_cpu();
	return NULL;
}

static void test_implicitly_attached_cpu_is_released_at_thread_exit(void **state)
{
	static struct bpf_mem_alloc ma;
	struct probe p = { .ma = &ma };
	struct attach_req r = { 0 };

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	run_thread(alloc_and_exit, &p);
	assert_in_range(p.after, 0, bpfmem_nr_cpus() - 1);
	assert_false(cpu_in_use(p.after));
	r.cpu = p.after;
	run_thread(attach_once, &r);
	assert_int_equal(r.ret, 0);
	assert_int_equal(r.current, p.after);
	bpf_mem_alloc_destroy(&ma);
}

/* ---- explicit attach ---- */

/* Attaches, reports, and holds the CPU until told to go. */
static void *attach_and_hold(void *arg)
{
	struct attach_req *r = arg;

	r->ret = bpfmem_thread_attach(r->cpu, r->flags);
	r->current = bpfmem_current_cpu();
	sem_post(&r->attached);
	sem_wait(&r->release);
	return NULL;
}

static void test_attach_owns_cpu_and_second_thread_gets_ebusy(void **state)
{
	struct attach_req owner = { .cpu = 5 }, other = { .cpu = 5 };
	pthread_t t;

	(void)state;
	sem_init(&owner.attached, 0, 0);
	sem_init(&owner.release, 0, 0);
	assert_int_equal(pthread_create(&t, NULL, attach_and_hold, &owner), 0);
	sem_wait(&owner.attached);
	run_thread(attach_once, &other);
	sem_post(&owner.release);
	assert_int_equal(pthread_join(t, NULL), 0);

	assert_int_equal(owner.ret, 0);
	assert_int_equal(owner.current, 5);
	assert_int_equal(other.ret, -EBUSY);
	assert_int_equal(other.current, -1);
	sem_destroy(&owner.attached);
	sem_destroy(&owner.release);
}

static void test_attach_rejects_out_of_range_cpu_and_unknown_flags(void **state)
{
	struct attach_req r[] = {
		{ .cpu = -1 },
		{ .cpu = bpfmem_nr_cpus() },
		{ .cpu = 0, .flags = 0x2 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		run_thread(attach_once, &r[i]);
		assert_int_equal(r[i].ret, -EINVAL);
		assert_int_equal(r[i].current, -1);
	}
}

static void *attach_then_detach(void *arg)
{
	struct attach_req *r = arg;

	r->ret = bpfmem_thread_attach(r->cpu, r->flags);
	bpfmem_thread_detach();
	r->current = bpfmem_current_cpu();
	/* stay alive while the next thread attaches: only detach released it */
	sem_post(&r->attached);
	sem_wait(&r->release);
	return NULL;
}

static void test_detached_cpu_can_be_attached_by_another_thread(void **state)
{
	struct attach_req owner = { .cpu = 6 }, next = { .cpu = 6 };
	pthread_t t;

	(void)state;
	sem_init(&owner.attached, 0, 0);
	sem_init(&owner.release, 0, 0);
	assert_int_equal(pthread_create(&t, NULL, attach_then_detach, &owner), 0);
	sem_wait(&owner.attached);
	run_thread(attach_once, &next);
	sem_post(&owner.release);
	assert_int_equal(pthread_join(t, NULL), 0);

	assert_int_equal(owner.ret, 0);
	assert_int_equal(owner.current, -1);
	assert_int_equal(next.ret, 0);
	assert_int_equal(next.current, 6);
	sem_destroy(&owner.attached);
	sem_destroy(&owner.release);
}

static void test_exited_owner_releases_cpu_to_another_thread(void **state)
{
	struct attach_req owner = { .cpu = 7 }, next = { .cpu = 7 };

	(void)state;
	run_thread(attach_once, &owner);
	assert_int_equal(owner.ret, 0);
	assert_false(cpu_in_use(7));
	run_thread(attach_once, &next);
	assert_int_equal(next.ret, 0);
	assert_int_equal(next.current, 7);
}

struct move_req {
	int ret_first, ret_again, ret_move;
	int current_after_again, current_after_move;
	bool first_in_use_after_move;
};

static void *attach_twice_then_move(void *arg)
{
	struct move_req *m = arg;

	m->ret_first = bpfmem_thread_attach(8, 0);
	m->ret_again = bpfmem_thread_attach(8, 0);
	m->current_after_again = bpfmem_current_cpu();
	m->ret_move = bpfmem_thread_attach(9, 0);
	m->current_after_move = bpfmem_current_cpu();
	m->first_in_use_after_move = cpu_in_use(8);
	return NULL;
}

static void test_attach_to_own_cpu_again_succeeds(void **state)
{
	struct move_req m = { 0 };

	(void)state;
	run_thread(attach_twice_then_move, &m);
	assert_int_equal(m.ret_first, 0);
	assert_int_equal(m.ret_again, 0);
	assert_int_equal(m.current_after_again, 8);
}

static void test_attach_to_another_cpu_releases_the_previous_one(void **state)
{
	struct move_req m = { 0 };

	(void)state;
	run_thread(attach_twice_then_move, &m);
	assert_int_equal(m.ret_move, 0);
	assert_int_equal(m.current_after_move, 9);
	assert_false(m.first_in_use_after_move);
	assert_false(cpu_in_use(9));	/* and the exit released the new one */
}

struct this_cpu_req {
	void *pptr;
	int before, after;
	void *mine;
};

static void *this_cpu_ptr_first(void *arg)
{
	struct this_cpu_req *r = arg;

	r->before = bpfmem_current_cpu();
	r->mine = bpfmem_this_cpu_ptr(r->pptr);
	r->after = bpfmem_current_cpu();
	return NULL;
}

static void test_this_cpu_ptr_attaches_and_returns_that_cpus_copy(void **state)
{
	static struct bpf_mem_alloc ma;
	struct this_cpu_req r = { 0 };
	void *obj;

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, true), 0);
	obj = cache_alloc_wait(&ma);
	assert_non_null(obj);
	r.pptr = *(void **)obj;
	run_thread(this_cpu_ptr_first, &r);
	assert_int_equal(r.before, -1);
	assert_in_range(r.after, 0, bpfmem_nr_cpus() - 1);
	assert_ptr_equal(r.mine, bpfmem_per_cpu_ptr(r.pptr, r.after));
	bpf_mem_cache_free(&ma, obj);
	bpf_mem_alloc_destroy(&ma);
}

struct pin_req {
	int cpu;
	int ret;
	int count;		/* CPUs in the affinity mask afterwards */
	int is_set;		/* the expected real CPU is in it */
};

static void *attach_pinned(void *arg)
{
	struct pin_req *r = arg;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	r->ret = bpfmem_thread_attach(r->cpu, BPFMEM_ATTACH_PIN);
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set))
		return NULL;
	r->count = CPU_COUNT(&set);
	r->is_set = CPU_ISSET(r->cpu % online, &set);
	return NULL;
}

static void test_attach_pin_sets_affinity_to_exactly_cpu_mod_online(void **state)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	/* below, at and above the number of online CPUs, and the last one */
	int cpus[] = { 0, (int)online - 1, (int)online, (int)online + 1, bpfmem_nr_cpus() - 1 };

	(void)state;
	for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++) {
		struct pin_req r = { .cpu = cpus[i] };

		/* this thread may own one: same real CPU, next free virtual one */
		while (cpu_in_use(r.cpu))
			r.cpu = (r.cpu + (int)online) % bpfmem_nr_cpus();

		run_thread(attach_pinned, &r);
		assert_int_equal(r.ret, 0);
		assert_int_equal(r.count, 1);
		assert_int_equal(r.is_set, 1);
	}
}

/* ---- many threads ---- */

#define LIVE_THREADS 16

struct live {
	struct bpf_mem_alloc *ma;
	pthread_barrier_t all_attached;
	int cpu[LIVE_THREADS];
	int got_obj[LIVE_THREADS];
	int idx;
};

static void *alloc_and_wait_for_all(void *arg)
{
	struct live *l = arg;
	int i = __atomic_fetch_add(&l->idx, 1, __ATOMIC_RELAXED);
	void *obj = cache_alloc_wait(l->ma);

	l->got_obj[i] = obj != NULL;
	l->cpu[i] = bpfmem_current_cpu();
	/* nobody exits (and releases its CPU) before everyone has one */
	pthread_barrier_wait(&l->all_attached);
	bpf_mem_cache_free(l->ma, obj);
	return NULL;
}

static void test_concurrently_live_threads_hold_distinct_cpus(void **state)
{
	static struct bpf_mem_alloc ma;
	struct live l = { .ma = &ma };
	pthread_t t[LIVE_THREADS];

	(void)state;
	assert_true(LIVE_THREADS < bpfmem_nr_cpus());
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	pthread_barrier_init(&l.all_attached, NULL, LIVE_THREADS);
	for (int i = 0; i < LIVE_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, alloc_and_wait_for_all, &l), 0);
	for (int i = 0; i < LIVE_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	pthread_barrier_destroy(&l.all_attached);

	for (int i = 0; i < LIVE_THREADS; i++) {
		assert_int_equal(l.got_obj[i], 1);
		assert_in_range(l.cpu[i], 0, bpfmem_nr_cpus() - 1);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(l.cpu[i], l.cpu[j]);
	}
	bpf_mem_alloc_destroy(&ma);
}

/* ---- what stays on a virtual CPU ---- */

#define HANDED_OVER 3

struct handover {
	struct bpf_mem_alloc *ma;
	int cpu;
	int ret;
	bool detach;		/* leave by detaching instead of exiting */
	void *obj[HANDED_OVER];
};

static void *free_on_cpu_and_leave(void *arg)
{
	struct handover *h = arg;

	h->ret = bpfmem_thread_attach(h->cpu, 0);
	for (int i = 0; i < HANDED_OVER; i++)
		h->obj[i] = cache_alloc_wait(h->ma);
	for (int i = 0; i < HANDED_OVER; i++)
		bpf_mem_cache_free(h->ma, h->obj[i]);
	if (h->detach)
		bpfmem_thread_detach();
	return NULL;
}

static void *attach_and_alloc(void *arg)
{
	struct handover *h = arg;

	h->ret = bpfmem_thread_attach(h->cpu, 0);
	for (int i = 0; i < HANDED_OVER; i++)
		h->obj[i] = bpf_mem_cache_alloc(h->ma);
	for (int i = 0; i < HANDED_OVER; i++)
		bpf_mem_cache_free(h->ma, h->obj[i]);
	return NULL;
}

static void check_next_owner_gets_cached_objects(bool detach)
{
	static struct bpf_mem_alloc ma;
	struct handover a = { .ma = &ma, .cpu = 3, .detach = detach };
	struct handover b = { .ma = &ma, .cpu = 3 };

	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	run_thread(free_on_cpu_and_leave, &a);
	run_thread(attach_and_alloc, &b);
	assert_int_equal(a.ret, 0);
	assert_int_equal(b.ret, 0);
	/* LIFO: the object freed last on CPU 3 comes out first */
	for (int i = 0; i < HANDED_OVER; i++) {
		assert_non_null(a.obj[i]);
		assert_ptr_equal(b.obj[i], a.obj[HANDED_OVER - 1 - i]);
	}
	bpf_mem_alloc_destroy(&ma);
}

static void test_objects_cached_on_cpu_go_to_its_next_owner_after_exit(void **state)
{
	(void)state;
	check_next_owner_gets_cached_objects(false);
}

static void test_objects_cached_on_cpu_go_to_its_next_owner_after_detach(void **state)
{
	(void)state;
	check_next_owner_gets_cached_objects(true);
}

#define EXIT_CACHED 20

struct exiter {
	struct bpf_mem_alloc *ma;
	int cpu;
	int got;
	struct bpfmem_cache_stats before_exit;
};

static void *cache_objects_and_exit(void *arg)
{
	struct exiter *e = arg;
	void *obj[EXIT_CACHED];

	e->got = 0;
	for (int i = 0; i < EXIT_CACHED; i++)
		e->got += (obj[i] = cache_alloc_wait(e->ma)) != NULL;
	for (int i = 0; i < EXIT_CACHED; i++)
		bpf_mem_cache_free(e->ma, obj[i]);
	e->cpu = bpfmem_current_cpu();
	/* let refills and trims in flight land first: only the exit may act */
	bpfmem_rcu_barrier();
	e->before_exit.sz = sizeof(e->before_exit);
	bpfmem_cache_stats(e->ma, 0, &e->before_exit);
	return NULL;
}

static void test_thread_exit_releases_cpu_and_keeps_its_cached_objects(void **state)
{
	static struct bpf_mem_alloc ma;
	struct exiter e = { .ma = &ma };
	struct bpfmem_cache_stats after = { .sz = sizeof(after) };
	long outstanding = slab_outstanding();

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&ma, OBJ_SIZE, false), 0);
	run_thread(cache_objects_and_exit, &e);
	assert_int_equal(e.got, EXIT_CACHED);
	assert_in_range(e.cpu, 0, bpfmem_nr_cpus() - 1);
	assert_false(cpu_in_use(e.cpu));
	assert_int_equal(bpfmem_cache_stats(&ma, 0, &after), 0);
	/* at least the EXIT_CACHED objects it freed sit on its CPU; none moved */
	assert_true(e.before_exit.cached >= EXIT_CACHED);
	assert_int_equal(after.cached, e.before_exit.cached);
	assert_int_equal(after.backend_frees, e.before_exit.backend_frees);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(slab_outstanding(), outstanding);
	assert_int_equal(atomic_load(&t_warnings), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nr_cpus_default_is_four_per_configured_cpu_but_at_least_64),
		cmocka_unit_test(test_current_cpu_is_minus_one_on_fresh_thread_and_does_not_attach),
		cmocka_unit_test(test_first_alloc_attaches_implicitly),
		cmocka_unit_test(test_first_free_attaches_implicitly),
		cmocka_unit_test(test_implicitly_attached_cpu_is_released_at_thread_exit),
		cmocka_unit_test(test_attach_owns_cpu_and_second_thread_gets_ebusy),
		cmocka_unit_test(test_attach_rejects_out_of_range_cpu_and_unknown_flags),
		cmocka_unit_test(test_detached_cpu_can_be_attached_by_another_thread),
		cmocka_unit_test(test_exited_owner_releases_cpu_to_another_thread),
		cmocka_unit_test(test_attach_to_own_cpu_again_succeeds),
		cmocka_unit_test(test_attach_to_another_cpu_releases_the_previous_one),
		cmocka_unit_test(test_this_cpu_ptr_attaches_and_returns_that_cpus_copy),
		cmocka_unit_test(test_attach_pin_sets_affinity_to_exactly_cpu_mod_online),
		cmocka_unit_test(test_concurrently_live_threads_hold_distinct_cpus),
		cmocka_unit_test(test_objects_cached_on_cpu_go_to_its_next_owner_after_exit),
		cmocka_unit_test(test_objects_cached_on_cpu_go_to_its_next_owner_after_detach),
		cmocka_unit_test(test_thread_exit_releases_cpu_and_keeps_its_cached_objects),
	};

	/* the default count is what is tested: BPFMEM_NR_CPUS is read once at
	 * load, so run a fresh copy of this binary without it */
	if (getenv("BPFMEM_NR_CPUS")) {
		unsetenv("BPFMEM_NR_CPUS");
		execv("/proc/self/exe", argv);
		return 1;
	}
	(void)argc;
	return t_run_group(tests, setup, teardown);
}
