/* SPDX-License-Identifier: MIT */
/*
 * With 1024 virtual CPUs (BPFMEM_NR_CPUS, set by tests/CMakeLists.txt),
 * idle allocators cost the pages of the CPUs that used them: counted page
 * by page in the chunks (pcpu_resident_pages), not from the process RSS.
 */
#include "helpers.h"

#define NR_FIXED	64	/* 64 x 384 B */
#define NR_ANY		8	/* 8 x 4224 B: 58368 B in all, 15 pages of a CPU's copy */
#define NR_MAS		(NR_FIXED + NR_ANY)

static struct bpf_mem_alloc mas[NR_MAS];
static pthread_barrier_t barrier;

static long pages_per_copy(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t bytes = NR_FIXED * sizeof(struct bpf_mem_cache) + NR_ANY * sizeof(struct bpf_mem_caches);

	return (long)((bytes + (size_t)page - 1) / (size_t)page);
}

static void init_one(int i)
{
	assert_int_equal(bpf_mem_alloc_init(&mas[i], i < NR_FIXED ? 64 : 0, false), 0);
}

static void *user(void *arg)
{
	if (bpfmem_thread_attach((int)(intptr_t)arg, 0) == 0) {
		for (int i = 0; i < NR_MAS; i++) {
			if (i < NR_FIXED)
				bpf_mem_cache_free(&mas[i], bpf_mem_cache_alloc(&mas[i]));
			else
				bpf_mem_free(&mas[i], bpf_mem_alloc(&mas[i], 64));
		}
	}
	pthread_barrier_wait(&barrier);
	return NULL;
}

static void test_idle_allocators_cost_the_pages_of_the_cpus_that_used_them(void **state)
{
	long chunks = pcpu_nr_chunks();
	pthread_t th[2];

	(void)state;
	assert_int_equal(bpfmem_nr_cpus(), 1024);
	assert_int_equal(chunks, 0);
	for (int i = 0; i < NR_MAS; i++)
		init_one(i);
	assert_int_equal(pcpu_nr_chunks(), 1);
	/* set up at init: CPU 0 (ours) and the shared CPU's copy */
	assert_int_equal(pcpu_resident_pages(), 2 * pages_per_copy());

	pthread_barrier_init(&barrier, NULL, 3);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, user, (void *)(intptr_t)(1 + i));
	pthread_barrier_wait(&barrier);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&barrier);
	bpfmem_rcu_barrier();
	assert_int_equal(pcpu_resident_pages(), 4 * pages_per_copy());

	/* destroy writes no copy that no CPU wrote, nor do new allocators in
	 * the zeroed holes */
	for (int i = 0; i < NR_MAS; i += 2)
		bpf_mem_alloc_destroy(&mas[i]);
	assert_int_equal(pcpu_resident_pages(), 4 * pages_per_copy());
	for (int i = 0; i < NR_MAS; i += 2)
		init_one(i);
	assert_int_equal(pcpu_nr_chunks(), 1);
	assert_int_equal(pcpu_resident_pages(), 4 * pages_per_copy());

	for (int i = 0; i < NR_MAS; i++)
		bpf_mem_alloc_destroy(&mas[i]);
	assert_int_equal(pcpu_nr_chunks(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_allocators_cost_the_pages_of_the_cpus_that_used_them),
	};

	return t_run(tests);
}
