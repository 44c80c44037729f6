// SPDX-License-Identifier: MIT
/*
 * The BPFMEM_DEBUG checks (this binary links the debug build of the
 * library): write after free, double free and foreign frees are reported
 * through the warning hook and never crash or corrupt the caches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <bpfmem.h>
#include "kernel/irq_work.h"
#include "helpers.h"

static char last_msg[512];
static int nr_warnings;

static void capture(const char *msg, void *arg)
{
	(void)arg;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
	if (getenv("DEBUG_CHECKS_VERBOSE"))
		fprintf(stderr, "warning: %s\n", msg);
	nr_warnings++;
}

static int setup(void **state)
{
	(void)state;
	last_msg[0] = '\0';
	nr_warnings = 0;
	bpfmem_set_warn_handler(capture, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bpfmem_set_warn_handler(NULL, NULL);
	return 0;
}

static void test_write_after_free_is_reported_with_its_offset(void **state)
{
	static struct bpf_mem_alloc ma;
	char *p, *q;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	bpf_mem_cache_free(&ma, p);
	p[10] = 1;		/* the bug under test */
	q = bpf_mem_cache_alloc(&ma);
	assert_ptr_equal(q, p);	/* LIFO: the same object comes back, and is checked */
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "write after free"));
	assert_non_null(strstr(last_msg, "offset 10"));
	bpf_mem_cache_free(&ma, q);
	bpf_mem_alloc_destroy(&ma);
}

static void test_double_free_is_reported_and_the_second_free_dropped(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p, *a, *b;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	p = bpf_mem_alloc(&ma, 100);
	assert_non_null(p);
	bpf_mem_free(&ma, p);
	bpf_mem_free(&ma, p);	/* the bug under test */
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "double free"));
	/* had the second free been pushed, p would now come out twice */
	a = bpf_mem_alloc(&ma, 100);
	b = bpf_mem_alloc(&ma, 100);
	assert_ptr_equal(a, p);
	assert_ptr_not_equal(b, p);
	assert_int_equal(nr_warnings, 1);
	bpf_mem_free(&ma, a);
	bpf_mem_free(&ma, b);
	bpf_mem_alloc_destroy(&ma);
}

static void test_double_free_rcu_of_fixed_object_is_reported(void **state)
{
	static struct bpf_mem_alloc ma;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 32, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	bpf_mem_cache_free(&ma, p);
	bpf_mem_cache_free_rcu(&ma, p);
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "double free"));
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(nr_warnings, 1);	/* and nothing leaked or lost */
}

static void test_foreign_pointer_free_is_reported(void **state)
{
	struct bpf_mem_alloc ma = { 0 }, other = { 0 };
	uint64_t *buf = calloc(8, sizeof(uint64_t));
	void *q;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&other, 0, false), 0);
	buf[0] = 0x1234;	/* a "header" that names no cache */
	bpf_mem_free(&ma, &buf[1]);
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "did not hand out"));

	q = bpf_mem_alloc(&other, 64);	/* from another allocator */
	bpf_mem_free(&ma, q);
	assert_int_equal(nr_warnings, 2);
	assert_non_null(strstr(last_msg, "did not hand out"));
	bpf_mem_free(&other, q);
	assert_int_equal(nr_warnings, 2);
	bpf_mem_alloc_destroy(&other);
	bpf_mem_alloc_destroy(&ma);
	free(buf);
}

static void test_foreign_pointer_to_fixed_cache_is_reported(void **state)
{
	struct bpf_mem_alloc a = { 0 }, b = { 0 };
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&a, 48, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&b, 48, false), 0);
	p = bpf_mem_cache_alloc(&a);
	bpf_mem_cache_free(&b, p);
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "did not hand out"));
	bpf_mem_cache_free(&a, p);
	bpf_mem_alloc_destroy(&a);
	bpf_mem_alloc_destroy(&b);
	assert_int_equal(nr_warnings, 1);
}

static void test_correct_use_through_refills_and_rcu_reports_nothing(void **state)
{
	static struct bpf_mem_alloc ma;
	void *held[300];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 300; i++) {
			held[i] = bpf_mem_alloc(&ma, 1 + (i * 37) % 4000);
			if (!held[i]) {
				irq_work_flush();
				i--;
				continue;
			}
			memset(held[i], 0xa5, 1 + (i * 37) % 4000);
		}
		for (int i = 0; i < 300; i++) {
			if (i % 3)
				bpf_mem_free(&ma, held[i]);
			else
				bpf_mem_free_rcu(&ma, held[i]);
		}
		bpfmem_rcu_barrier();
	}
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(nr_warnings, 0);
}

/* Release builds leave a garbage allocator undefined, as the kernel does;
 * debug builds check the magic of every allocation and free. */
static void test_garbage_allocator_is_reported_by_alloc_and_free(void **state)
{
	static struct bpf_mem_alloc fixed, any, garbage;
	void *p, *q;

	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	p = bpf_mem_cache_alloc(&fixed);
	q = bpf_mem_alloc(&any, 40);
	assert_non_null(p);
	assert_non_null(q);
	memset(&garbage, 0xa5, sizeof(garbage));
	assert_null(bpf_mem_cache_alloc(&garbage));
	assert_null(bpf_mem_alloc(&garbage, 8));
	bpf_mem_cache_free(&garbage, p);
	bpf_mem_free(&garbage, q);
	bpf_mem_cache_free_rcu(&garbage, p);
	bpf_mem_free_rcu(&garbage, q);
	assert_int_equal(nr_warnings, 6);
	assert_non_null(strstr(last_msg, "garbage"));
	/* none of the frees took the objects */
	bpf_mem_cache_free(&fixed, p);
	bpf_mem_free(&any, q);
	assert_int_equal(nr_warnings, 6);
	bpf_mem_alloc_destroy(&fixed);
	bpf_mem_alloc_destroy(&any);
}

static void test_destroy_reports_outstanding_objects_with_their_count(void **state)
{
	static struct bpf_mem_alloc ma;
	char *leaked[3];

	assert_int_equal(bpf_mem_alloc_init(&ma, 24, false), 0);
	for (int i = 0; i < 3; i++) {
		leaked[i] = bpf_mem_cache_alloc(&ma);
		assert_non_null(leaked[i]);
	}
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(nr_warnings, 1);
	assert_non_null(strstr(last_msg, "3 objects still allocated"));
	/* the leak was the point; leaked units stay mapped in their chunk */
	for (int i = 0; i < 3; i++)
		memset(leaked[i], 0, 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_after_free_is_reported_with_its_offset,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_double_free_is_reported_and_the_second_free_dropped,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_double_free_rcu_of_fixed_object_is_reported,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_pointer_free_is_reported,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_pointer_to_fixed_cache_is_reported,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_correct_use_through_refills_and_rcu_reports_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_allocator_is_reported_by_alloc_and_free,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_reports_outstanding_objects_with_their_count,
						setup, teardown),
	};

	return t_run_group(tests, NULL, NULL);
}
