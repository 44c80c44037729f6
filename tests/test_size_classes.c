/* SPDX-License-Identifier: MIT */
/*
 * Size classes: which cache serves each request size of the any-size
 * allocator (header included), the size limits and object alignment.
 */
#include "helpers.h"

#include <errno.h>

/* SPEC's table, written out independently of the library's. */
static int expected_unit(size_t size_with_hdr)
{
	static const int units[] = { 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096 };

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (size_with_hdr <= (size_t)units[i])
			return units[i];
	return 0;
}

static void test_alloc_of_zero_bytes_returns_null(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	assert_null(bpf_mem_alloc(&ma, 0));
	bpf_mem_alloc_destroy(&ma);
}

static void test_every_size_up_to_4088_is_served_by_its_class(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (size_t size = 1; size <= 4088; size++) {
		int unit = expected_unit(size + T_HDR);
		char *p = bpf_mem_alloc(&ma, size);

		assert_non_null(p);
		assert_int_equal(t_owner(p)->unit_size, unit);
		/* the caller's own CPU serves it, from the class with that unit */
		assert_ptr_equal(t_owner(p), t_cache(&ma, t_class_idx(unit), 0));
		memset(p, 0xab, size);	/* ASan: the object really has `size` bytes */
		bpf_mem_free(&ma, p);
	}
	bpf_mem_alloc_destroy(&ma);
}

static void test_sizes_above_4088_return_null(void **state)
{
	static const size_t sizes[] = { 4089, 4090, 4095, 4096, 4097, 8192, 1 << 20, SIZE_MAX };
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		assert_null(bpf_mem_alloc(&ma, sizes[i]));
	bpf_mem_alloc_destroy(&ma);
}

static void test_check_size_limit_is_4088_without_percpu(void **state)
{
	assert_int_equal(bpf_mem_alloc_check_size(false, 1), 0);
	assert_int_equal(bpf_mem_alloc_check_size(false, 4088), 0);
	assert_int_equal(bpf_mem_alloc_check_size(false, 4089), -E2BIG);
	assert_int_equal(bpf_mem_alloc_check_size(false, 4096), -E2BIG);
	assert_int_equal(bpf_mem_alloc_check_size(false, SIZE_MAX), -E2BIG);
}

static void test_check_size_limit_is_4096_for_percpu(void **state)
{
	assert_int_equal(bpf_mem_alloc_check_size(true, 1), 0);
	assert_int_equal(bpf_mem_alloc_check_size(true, 4088), 0);
	assert_int_equal(bpf_mem_alloc_check_size(true, 4096), 0);
	assert_int_equal(bpf_mem_alloc_check_size(true, 4097), -E2BIG);
	assert_int_equal(bpf_mem_alloc_check_size(true, SIZE_MAX), -E2BIG);
}

/* Per-CPU units carry no header: size itself selects the class, up to 4096. */
static void test_percpu_size_maps_to_class_without_header(void **state)
{
	static struct bpf_mem_alloc ma;

	assert_int_equal(bpf_mem_alloc_percpu_init(&ma, NULL), 0);
	for (int size = 1; size <= 4096; size++)
		assert_int_equal(bpf_mem_alloc_percpu_unit_init(&ma, size), 0);
	for (size_t size = 1; size <= 4096; size++) {
		void *p = bpf_mem_alloc(&ma, size);

		assert_non_null(p);
		assert_int_equal(t_owner(p)->unit_size, expected_unit(size));
		/* ASan: CPU 0's copy really has `size` bytes */
		memset(bpfmem_per_cpu_ptr(*(void **)p, 0), 0xcd, size);
		bpf_mem_free(&ma, p);
	}
	assert_null(bpf_mem_alloc(&ma, 0));
	assert_null(bpf_mem_alloc(&ma, 4097));
	bpf_mem_alloc_destroy(&ma);
}

static void test_every_object_is_8_byte_aligned(void **state)
{
	static const int fixed[] = { 1, 3, 7, 9, 13, 100, 257, 4095, 4097, 5001 };
	static struct bpf_mem_alloc ma;
	void *held[64];

	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (size_t size = 1; size <= 4088; size += 61) {
		for (int i = 0; i < 64; i++) {
			held[i] = bpf_mem_alloc(&ma, size);
			assert_non_null(held[i]);
			assert_int_equal((uintptr_t)held[i] % 8, 0);
			irq_work_flush();	/* let refills land: 64 > the 4 prefilled */
		}
		for (int i = 0; i < 64; i++)
			bpf_mem_free(&ma, held[i]);
	}
	bpf_mem_alloc_destroy(&ma);

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		assert_int_equal(bpf_mem_alloc_init(&ma, fixed[i], false), 0);
		for (int j = 0; j < 8; j++) {
			held[j] = bpf_mem_cache_alloc_flags(&ma, BPFMEM_GFP_KERNEL);
			assert_non_null(held[j]);
			assert_int_equal((uintptr_t)held[j] % 8, 0);
		}
		for (int j = 0; j < 8; j++)
			bpf_mem_cache_free(&ma, held[j]);
		bpf_mem_alloc_destroy(&ma);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_of_zero_bytes_returns_null),
		cmocka_unit_test(test_every_size_up_to_4088_is_served_by_its_class),
		cmocka_unit_test(test_sizes_above_4088_return_null),
		cmocka_unit_test(test_check_size_limit_is_4088_without_percpu),
		cmocka_unit_test(test_check_size_limit_is_4096_for_percpu),
		cmocka_unit_test(test_percpu_size_maps_to_class_without_header),
		cmocka_unit_test(test_every_object_is_8_byte_aligned),
	};

	return t_run(tests);
}
