// SPDX-License-Identifier: MIT
/*
 * The ubpf adapter without ubpf: its helpers and bounds check are plain C
 * functions in ubpf's signatures, called here as a VM would call them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bpfmem_ubpf.h"

#define U64(p) ((uint64_t)(uintptr_t)(p))

static uint64_t obj_new(uint64_t size)
{
	return bpfmem_ubpf_obj_new(size, 0, 0, 0, 0, NULL);
}

static uint64_t obj_drop(uint64_t ptr)
{
	return bpfmem_ubpf_obj_drop(ptr, 0, 0, 0, 0, NULL);
}

static bool check(uint64_t addr, uint64_t size)
{
	return bpfmem_ubpf_bounds_check(bpfmem_ubpf_ma(), addr, size);
}

static void test_helpers_before_init_allocate_nothing(void **state)
{
	int on_stack;

	assert_null(bpfmem_ubpf_ma());
	assert_int_equal(obj_new(64), 0);
	assert_int_equal(obj_drop(U64(&on_stack)), (uint64_t)-EINVAL);
	assert_false(check(U64(&on_stack), 4));
}

static int init(void **state)
{
	return bpfmem_ubpf_init();
}

static int fini(void **state)
{
	bpfmem_ubpf_exit();
	return 0;
}

static void test_obj_new_returns_a_zeroed_object_the_bounds_check_admits(void **state)
{
	unsigned char *p = (unsigned char *)(uintptr_t)obj_new(100);

	assert_non_null(p);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 0);
	memset(p, 0xa5, 100);
	assert_true(check(U64(p), 100));
	assert_true(check(U64(p) + 96, 8));
	assert_int_equal(obj_drop(U64(p)), 0);
	/* reused objects are zeroed again */
	p = (unsigned char *)(uintptr_t)obj_new(100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(p[i], 0);
	assert_int_equal(obj_drop(U64(p)), 0);
}

static void test_obj_new_refuses_sizes_0_and_above_4088(void **state)
{
	uint64_t p = obj_new(4088);

	assert_int_equal(obj_new(0), 0);
	assert_int_equal(obj_new(4089), 0);
	assert_int_equal(obj_new(UINT64_MAX), 0);
	assert_true(p != 0);
	assert_true(check(p, 4088));
	assert_int_equal(obj_drop(p), 0);
}

static void test_bounds_check_refuses_header_end_and_foreign_memory(void **state)
{
	static struct bpf_mem_alloc other;
	uint64_t p = obj_new(24);	/* a 32-byte unit: 24 usable bytes */
	int on_stack;
	void *q;

	assert_int_equal(bpf_mem_alloc_init(&other, 24, false), 0);
	q = bpf_mem_cache_alloc(&other);
	assert_non_null(q);
	assert_true(check(p, 24));
	assert_false(check(p, 25));
	assert_false(check(p + 20, 8));
	assert_false(check(p - 8, 8));	/* the allocator's header */
	assert_false(check(U64(&on_stack), sizeof(on_stack)));
	assert_false(check(U64(q), 8));
	assert_false(check(0, 8));
	assert_false(check(UINT64_MAX - 3, 8));
	assert_int_equal(obj_drop(p), 0);
	bpf_mem_cache_free(&other, q);
	bpf_mem_alloc_destroy(&other);
}

static void test_obj_drop_refuses_interior_foreign_and_null_pointers(void **state)
{
	uint64_t p = obj_new(64), again;
	int on_stack;

	assert_int_equal(obj_drop(p + 8), (uint64_t)-EINVAL);
	assert_int_equal(obj_drop(p - 8), (uint64_t)-EINVAL);
	assert_int_equal(obj_drop(U64(&on_stack)), (uint64_t)-EINVAL);
	assert_int_equal(obj_drop(0), (uint64_t)-EINVAL);
	/* none of those freed it: it is still the caller's, and dropped once */
	assert_true(check(p, 64));
	assert_int_equal(obj_drop(p), 0);
	/* the object freed last is handed out next (LIFO) */
	again = obj_new(64);
	assert_int_equal(again, p);
	assert_int_equal(obj_drop(again), 0);
}

/* ---- the contexts a VM runs in: threads on their virtual CPUs, signals ---- */

#define THREADS	4
#define ROUNDS	20000

static void *vm_thread(void *arg)
{
	long bad = 0;

	if (bpfmem_thread_attach((int)(intptr_t)arg, 0))
		return (void *)1L;
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t size = 1 + (uint64_t)(i * 37) % 4088;
		uint64_t p = obj_new(size);

		if (!p)
			continue;	/* an empty cache while its refill is in flight */
		((volatile char *)(uintptr_t)p)[0] = (char)i;
		((volatile char *)(uintptr_t)p)[size - 1] = (char)i;
		bad += !check(p, size) || check(p, size + 4096) || obj_drop(p) != 0;
	}
	bpfmem_thread_detach();
	return (void *)bad;
}

static void test_helpers_from_several_threads_each_on_its_own_virtual_cpu(void **state)
{
	pthread_t t[THREADS];

	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, vm_thread, (void *)(intptr_t)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++) {
		void *bad;

		assert_int_equal(pthread_join(t[i], &bad), 0);
		assert_null(bad);
	}
}

static volatile sig_atomic_t handler_result;

static void vm_in_handler(int sig)
{
	uint64_t p = obj_new(48);

	(void)sig;
	/* NULL is a valid answer in a handler; a non-NULL object must work */
	handler_result = !p ? 2 : check(p, 48) && !check(p, 57) && obj_drop(p) == 0 ? 1 : 3;
}

static void test_helpers_run_in_a_signal_handler(void **state)
{
	struct sigaction sa = { .sa_handler = vm_in_handler };
	uint64_t warm = obj_new(48);

	/* the cache has objects: the handler's allocation finds one */
	assert_int_equal(obj_drop(warm), 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	handler_result = 0;
	assert_int_equal(raise(SIGUSR1), 0);
	assert_int_equal(handler_result, 1);
	signal(SIGUSR1, SIG_DFL);
}

int main(void)
{
	const struct CMUnitTest before[] = {
		cmocka_unit_test(test_helpers_before_init_allocate_nothing),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_obj_new_returns_a_zeroed_object_the_bounds_check_admits),
		cmocka_unit_test(test_obj_new_refuses_sizes_0_and_above_4088),
		cmocka_unit_test(test_bounds_check_refuses_header_end_and_foreign_memory),
		cmocka_unit_test(test_obj_drop_refuses_interior_foreign_and_null_pointers),
		cmocka_unit_test(test_helpers_from_several_threads_each_on_its_own_virtual_cpu),
		cmocka_unit_test(test_helpers_run_in_a_signal_handler),
	};

	if (bpfmem_thread_attach(0, 0))
		return 1;
	return cmocka_run_group_tests(before, NULL, NULL) | cmocka_run_group_tests(tests, init, fini);
}
