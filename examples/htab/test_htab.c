/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of examples/htab: every update flag and error code with the kernel's values,
 * max_entries, delete, get-next-key iteration, per-CPU values, re-entry from a signal
 * handler, and what a reader inside an RCU section keeps seeing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "htab.h"

struct val {
	uint64_t a, b;
};

static _Atomic int warnings;

static void count_warning(const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	atomic_fetch_add(&warnings, 1);
}

static struct htab *make(uint32_t max_entries, uint32_t flags)
{
	struct htab_attr attr = { .key_size = 4, .value_size = sizeof(struct val),
				  .max_entries = max_entries, .map_flags = flags };
	struct htab *h = NULL;

	assert_int_equal(htab_create(&attr, &h), 0);
	assert_non_null(h);
	return h;
}

/*
 * As in the kernel, an update finds the element cache empty (-ENOMEM) when it outruns the
 * asynchronous refill; these tests are about the other outcomes, so they wait for it.  The
 * -ENOMEM path has its own test.
 */
static int put(struct htab *h, uint32_t key, uint64_t a, uint64_t flags)
{
	struct val v = { a, ~a };
	int err;

	while ((err = htab_update(h, &key, &v, flags)) == -ENOMEM)
		sched_yield();
	return err;
}

/* a, or -1 when the key is absent; copies inside the read-side section */
static int64_t get(struct htab *h, uint32_t key)
{
	int64_t r = -1;
	struct val *v;

	bpfmem_rcu_read_lock();
	v = htab_lookup(h, &key);
	if (v) {
		assert_int_equal(v->b, ~v->a);
		r = (int64_t)v->a;
	}
	bpfmem_rcu_read_unlock();
	return r;
}

static int setup(void **state)
{
	(void)state;
	atomic_store(&warnings, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* the library reports objects still allocated at destroy: none may be */
	assert_int_equal(atomic_load(&warnings), 0);
	return 0;
}

static void test_create_rejects_zero_sizes_and_unknown_flags(void **state)
{
	struct htab_attr ok = { .key_size = 4, .value_size = 8, .max_entries = 16,
				.map_flags = BPF_F_NO_PREALLOC };
	struct htab_attr a;
	struct htab *h = (struct htab *)1;

	a = ok, a.key_size = 0;
	assert_int_equal(htab_create(&a, &h), -EINVAL);
	assert_null(h);
	a = ok, a.value_size = 0;
	assert_int_equal(htab_create(&a, &h), -EINVAL);
	a = ok, a.max_entries = 0;
	assert_int_equal(htab_create(&a, &h), -EINVAL);
	a = ok, a.map_flags = 1u << 5;
	assert_int_equal(htab_create(&a, &h), -EINVAL);
}

static void *never_alloc(void *ctx, size_t size)
{
	(void)ctx;
	(void)size;
	return NULL;
}

static void never_free(void *ctx, void *p)
{
	(void)ctx;
	(void)p;
	fail_msg("nothing was allocated");
}

static const struct htab_elem_ops no_memory = { .alloc = never_alloc, .free = never_free };

static void test_create_rejects_elem_ops_on_preallocated_and_percpu_maps(void **state)
{
	struct htab_attr a = { .key_size = 4, .value_size = 8, .max_entries = 16,
			       .elem_ops = &no_memory };
	struct htab *h;

	assert_int_equal(htab_create(&a, &h), -EINVAL);
	a.map_flags = BPF_F_NO_PREALLOC;
	a.percpu = 1;
	assert_int_equal(htab_create(&a, &h), -EINVAL);
}

static void test_create_rejects_oversized_key_and_percpu_value_with_e2big(void **state)
{
	struct htab_attr a = { .key_size = HTAB_MAX_KEY_SIZE + 1, .value_size = 8,
			       .max_entries = 16, .map_flags = BPF_F_NO_PREALLOC };
	struct htab *h;

	assert_int_equal(htab_create(&a, &h), -E2BIG);
	a.key_size = 4;
	a.percpu = 1;
	a.value_size = BPFMEM_ALLOC_SIZE_MAX + 1;
	assert_int_equal(htab_create(&a, &h), -E2BIG);
}

static void test_update_any_creates_then_replaces(void **state)
{
	struct htab *h = make(16, BPF_F_NO_PREALLOC);

	assert_int_equal(put(h, 7, 100, BPF_ANY), 0);
	assert_int_equal(get(h, 7), 100);
	assert_int_equal(put(h, 7, 200, BPF_ANY), 0);
	assert_int_equal(get(h, 7), 200);
	assert_int_equal(htab_count(h), 1);
	htab_destroy(h);
}

static void test_update_noexist_fails_with_eexist_on_existing_key(void **state)
{
	struct htab *h = make(16, BPF_F_NO_PREALLOC);

	assert_int_equal(put(h, 7, 100, BPF_NOEXIST), 0);
	assert_int_equal(put(h, 7, 200, BPF_NOEXIST), -EEXIST);
	assert_int_equal(get(h, 7), 100);
	assert_int_equal(htab_count(h), 1);
	htab_destroy(h);
}

static void test_update_exist_fails_with_enoent_on_missing_key(void **state)
{
	struct htab *h = make(16, BPF_F_NO_PREALLOC);

	assert_int_equal(put(h, 7, 100, BPF_EXIST), -ENOENT);
	assert_int_equal(get(h, 7), -1);
	assert_int_equal(htab_count(h), 0);
	assert_int_equal(put(h, 7, 100, BPF_ANY), 0);
	assert_int_equal(put(h, 7, 300, BPF_EXIST), 0);
	assert_int_equal(get(h, 7), 300);
	htab_destroy(h);
}

static void test_update_unknown_flags_fail_with_einval(void **state)
{
	struct htab *h = make(16, BPF_F_NO_PREALLOC);

	assert_int_equal(put(h, 7, 100, BPF_EXIST + 1), -EINVAL);
	assert_int_equal(get(h, 7), -1);
	htab_destroy(h);
}

static void check_full_map(uint32_t flags)
{
	struct htab *h = make(8, flags);

	for (uint32_t k = 0; k < 8; k++)
		assert_int_equal(put(h, k, k, BPF_NOEXIST), 0);
	assert_int_equal(put(h, 100, 1, BPF_ANY), -E2BIG);
	assert_int_equal(put(h, 100, 1, BPF_NOEXIST), -E2BIG);
	/* replacing an existing key needs no new slot */
	assert_int_equal(put(h, 3, 33, BPF_ANY), 0);
	assert_int_equal(put(h, 3, 34, BPF_EXIST), 0);
	assert_int_equal(get(h, 3), 34);
	assert_int_equal(htab_count(h), 8);
	assert_int_equal(htab_delete(h, &(uint32_t){ 5 }), 0);
	assert_int_equal(put(h, 100, 1, BPF_NOEXIST), 0);
	assert_int_equal(htab_count(h), 8);
	htab_destroy(h);
}

static void test_new_key_in_full_map_fails_with_e2big(void **state)
{
	check_full_map(BPF_F_NO_PREALLOC);
}

static void test_new_key_in_full_preallocated_map_fails_with_e2big(void **state)
{
	check_full_map(0);
}

static void test_update_fails_with_enomem_when_allocator_has_nothing(void **state)
{
	struct htab_attr a = { .key_size = 4, .value_size = 16, .max_entries = 8,
			       .map_flags = BPF_F_NO_PREALLOC, .elem_ops = &no_memory };
	struct htab *h;

	assert_int_equal(htab_create(&a, &h), 0);
	assert_int_equal(htab_update(h, &(uint32_t){ 1 }, &(struct val){ 1, ~1ull }, BPF_ANY),
			 -ENOMEM);
	/* the failed insert gave its slot back */
	assert_int_equal(htab_count(h), 0);
	htab_destroy(h);
}

static void test_delete_removes_key_and_missing_key_fails_with_enoent(void **state)
{
	struct htab *h = make(16, BPF_F_NO_PREALLOC);
	uint32_t k = 9;

	assert_int_equal(htab_delete(h, &k), -ENOENT);
	assert_int_equal(put(h, k, 1, BPF_ANY), 0);
	assert_int_equal(put(h, k + 1, 2, BPF_ANY), 0);
	assert_int_equal(htab_delete(h, &k), 0);
	assert_int_equal(get(h, k), -1);
	assert_int_equal(get(h, k + 1), 2);
	assert_int_equal(htab_delete(h, &k), -ENOENT);
	assert_int_equal(htab_count(h), 1);
	htab_destroy(h);
}

static void check_iteration(uint32_t flags)
{
	enum { N = 300 };
	struct htab *h = make(512, flags);
	uint32_t key, next, missing = 100000;
	int seen[N] = { 0 }, n = 0;

	assert_int_equal(htab_get_next_key(h, NULL, &next), -ENOENT);
	for (uint32_t k = 0; k < N; k++)
		assert_int_equal(put(h, k, k, BPF_ANY), 0);
	/* NULL and a key not in the map both give the first key */
	assert_int_equal(htab_get_next_key(h, NULL, &key), 0);
	assert_int_equal(htab_get_next_key(h, &missing, &next), 0);
	assert_int_equal(next, key);
	for (;;) {
		assert_true(key < N);
		seen[key]++;
		n++;
		int err = htab_get_next_key(h, &key, &next);

		if (err) {
			assert_int_equal(err, -ENOENT);
			break;
		}
		key = next;
	}
	assert_int_equal(n, N);
	for (int k = 0; k < N; k++)
		assert_int_equal(seen[k], 1);
	htab_destroy(h);
}

static void test_get_next_key_visits_every_key_once_then_enoent(void **state)
{
	check_iteration(BPF_F_NO_PREALLOC);
}

static void test_get_next_key_on_preallocated_map(void **state)
{
	check_iteration(0);
}

/* ---- per-CPU values ---- */

struct pcpu_job {
	struct htab *h;
	int cpu;
	uint64_t value;
	uint64_t flags;
	int err;
};

static void *pcpu_writer(void *arg)
{
	struct pcpu_job *j = arg;
	uint32_t key = 1;

	if (bpfmem_thread_attach(j->cpu, 0))
		j->err = -100;
	else
		while ((j->err = htab_update(j->h, &key, &j->value, j->flags)) == -ENOMEM)
			sched_yield();
	bpfmem_thread_detach();
	return NULL;
}

static void run_on_cpu(struct pcpu_job *j)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, pcpu_writer, j), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static uint64_t pcpu_get(struct htab *h, int cpu)
{
	uint32_t key = 1;
	uint64_t v;

	bpfmem_rcu_read_lock();
	uint64_t *p = htab_lookup_percpu(h, &key, cpu);

	assert_non_null(p);
	v = *p;
	bpfmem_rcu_read_unlock();
	return v;
}

static void check_percpu(uint32_t flags)
{
	struct htab_attr a = { .key_size = 4, .value_size = 8, .max_entries = 4,
			       .map_flags = flags, .percpu = 1 };
	struct htab *h;
	struct pcpu_job j0 = { .cpu = 2, .value = 11, .flags = BPF_NOEXIST };
	struct pcpu_job j1 = { .cpu = 3, .value = 22, .flags = BPF_EXIST };

	assert_int_equal(htab_create(&a, &h), 0);
	j0.h = j1.h = h;
	run_on_cpu(&j0);
	assert_int_equal(j0.err, 0);
	/* a new element: the writer's copy, zero on every other CPU */
	assert_int_equal(pcpu_get(h, 2), 11);
	assert_int_equal(pcpu_get(h, 3), 0);
	assert_int_equal(pcpu_get(h, bpfmem_nr_cpus()), 0);
	run_on_cpu(&j1);
	assert_int_equal(j1.err, 0);
	/* an existing one is updated in place: the other CPU's copy stays */
	assert_int_equal(pcpu_get(h, 2), 11);
	assert_int_equal(pcpu_get(h, 3), 22);
	j0.flags = BPF_NOEXIST;
	run_on_cpu(&j0);
	assert_int_equal(j0.err, -EEXIST);
	assert_null(htab_lookup_percpu(h, &(uint32_t){ 1 }, bpfmem_nr_cpus() + 1));
	assert_int_equal(htab_delete(h, &(uint32_t){ 1 }), 0);
	assert_null(htab_lookup_percpu(h, &(uint32_t){ 1 }, 2));
	htab_destroy(h);
}

static void test_percpu_update_writes_own_cpu_and_zeroes_others(void **state)
{
	check_percpu(BPF_F_NO_PREALLOC);
}

static void test_percpu_preallocated_map(void **state)
{
	check_percpu(0);
}

static void test_lookup_percpu_on_plain_map_is_null(void **state)
{
	struct htab *h = make(4, BPF_F_NO_PREALLOC);

	assert_int_equal(put(h, 1, 1, BPF_ANY), 0);
	assert_null(htab_lookup_percpu(h, &(uint32_t){ 1 }, 0));
	htab_destroy(h);
}

/* ---- re-entry from a signal handler on the thread that holds the bucket ---- */

static struct htab *reentry_map;
static int reentry_update_err, reentry_delete_err;

static void reentry_handler(int sig)
{
	(void)sig;
	reentry_update_err = put(reentry_map, 1, 2, BPF_ANY);
	reentry_delete_err = htab_delete(reentry_map, &(uint32_t){ 1 });
}

static void *interrupting_alloc(void *ctx, size_t size)
{
	(void)ctx;
	/* called under the bucket lock of key 1: the handler runs there */
	raise(SIGUSR1);
	return malloc(size);
}

static void plain_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);	/* no reader in this test */
}

static void test_update_from_handler_on_held_bucket_fails_with_ebusy(void **state)
{
	static const struct htab_elem_ops ops = { .alloc = interrupting_alloc, .free = plain_free };
	struct htab_attr a = { .key_size = 4, .value_size = sizeof(struct val), .max_entries = 8,
			       .map_flags = BPF_F_NO_PREALLOC, .elem_ops = &ops };
	struct sigaction sa = { .sa_handler = reentry_handler }, old;

	assert_int_equal(htab_create(&a, &reentry_map), 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, &old);
	assert_int_equal(put(reentry_map, 1, 1, BPF_ANY), 0);
	sigaction(SIGUSR1, &old, NULL);
	assert_int_equal(reentry_update_err, -EBUSY);
	assert_int_equal(reentry_delete_err, -EBUSY);
	assert_int_equal(get(reentry_map, 1), 1);
	htab_destroy(reentry_map);
}

/* ---- readers inside an RCU section ---- */

struct reader {
	struct htab *h;
	sem_t inside, done;
	struct val seen_before, seen_after;
	int found;
};

static void *parked_reader(void *arg)
{
	struct reader *r = arg;
	struct val *v;

	bpfmem_rcu_read_lock();
	v = htab_lookup(r->h, &(uint32_t){ 42 });
	r->found = v != NULL;
	if (v)
		r->seen_before = *v;
	sem_post(&r->inside);
	sem_wait(&r->done);
	if (v)
		r->seen_after = *v;
	bpfmem_rcu_read_unlock();
	return NULL;
}

static void test_replaced_value_stays_intact_for_reader_inside_rcu_section(void **state)
{
	struct htab *h = make(64, BPF_F_NO_PREALLOC);
	struct reader r = { .h = h };
	pthread_t t;

	assert_int_equal(put(h, 42, 1000, BPF_ANY), 0);
	sem_init(&r.inside, 0, 0);
	sem_init(&r.done, 0, 0);
	assert_int_equal(pthread_create(&t, NULL, parked_reader, &r), 0);
	sem_wait(&r.inside);
	/* every replace frees the previous element; none may be handed out again while the
	 * reader holds its pointer (with bpf_mem_cache_free, LIFO reuse would at once) */
	for (uint64_t i = 0; i < 1000; i++) {
		assert_int_equal(put(h, 42, 2000 + i, BPF_ANY), 0);
		assert_int_equal(put(h, 43 + (uint32_t)(i % 8), i, BPF_ANY), 0);
		assert_int_equal(htab_delete(h, &(uint32_t){ 43 + (uint32_t)(i % 8) }), 0);
	}
	assert_int_equal(htab_delete(h, &(uint32_t){ 42 }), 0);
	sem_post(&r.done);
	pthread_join(t, NULL);
	assert_true(r.found);
	assert_int_equal(r.seen_before.a, 1000);
	assert_int_equal(r.seen_after.a, 1000);
	assert_int_equal(r.seen_after.b, ~(uint64_t)1000);
	htab_destroy(h);
}

static void test_preallocated_map_reuses_deleted_element_at_once(void **state)
{
	struct htab *h = make(4, 0);
	void *before, *after;

	assert_int_equal(put(h, 1, 1, BPF_ANY), 0);
	bpfmem_rcu_read_lock();
	before = htab_lookup(h, &(uint32_t){ 1 });
	bpfmem_rcu_read_unlock();
	assert_int_equal(htab_delete(h, &(uint32_t){ 1 }), 0);
	/* the kernel's preallocated semantics: the pool element serves the next insert */
	assert_int_equal(put(h, 2, 2, BPF_ANY), 0);
	bpfmem_rcu_read_lock();
	after = htab_lookup(h, &(uint32_t){ 2 });
	bpfmem_rcu_read_unlock();
	assert_ptr_equal(before, after);
	htab_destroy(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_rejects_zero_sizes_and_unknown_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_rejects_elem_ops_on_preallocated_and_percpu_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_rejects_oversized_key_and_percpu_value_with_e2big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_any_creates_then_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_noexist_fails_with_eexist_on_existing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_exist_fails_with_enoent_on_missing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_unknown_flags_fail_with_einval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_key_in_full_map_fails_with_e2big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_key_in_full_preallocated_map_fails_with_e2big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_fails_with_enomem_when_allocator_has_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_removes_key_and_missing_key_fails_with_enoent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_next_key_visits_every_key_once_then_enoent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_next_key_on_preallocated_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_percpu_update_writes_own_cpu_and_zeroes_others, setup, teardown),
		cmocka_unit_test_setup_teardown(test_percpu_preallocated_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_percpu_on_plain_map_is_null, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_from_handler_on_held_bucket_fails_with_ebusy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaced_value_stays_intact_for_reader_inside_rcu_section, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preallocated_map_reuses_deleted_element_at_once, setup, teardown),
	};

	bpfmem_set_warn_handler(count_warning, NULL);
	/* virtual CPU 0: the per-CPU tests attach their writers to 2 and 3 */
	if (bpfmem_thread_attach(0, 0))
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
