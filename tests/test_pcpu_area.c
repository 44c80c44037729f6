/* SPDX-License-Identifier: MIT */
/*
 * Cache areas (kernel/percpu.c): packed into shared chunks at 64-byte
 * offsets, handed out zeroed, a chunk unmapped with its last area, and
 * allocators that share chunks created, used and destroyed in any order.
 */
#include "helpers.h"

#define FIXED_AREA	sizeof(struct bpf_mem_cache)
#define ANY_AREA	sizeof(struct bpf_mem_caches)
#define ANY_PER_CHUNK	(PCPU_STRIDE / ANY_AREA)	/* 15 */

static void fill_copies(void *area, size_t size, int byte)
{
	for (int cpu = 0; cpu <= nr_cpu_ids; cpu++)
		memset(pcpu_area_ptr(area, cpu, 0), byte, size);
}

/* Every copy zero: the number of nonzero bytes over all of them. */
static size_t nonzero_bytes(const void *area, size_t size)
{
	size_t n = 0;

	for (int cpu = 0; cpu <= nr_cpu_ids; cpu++) {
		const unsigned char *b = pcpu_area_ptr(area, cpu, 0);

		for (size_t i = 0; i < size; i++)
			n += b[i] != 0;
	}
	return n;
}

static void test_cache_areas_share_a_chunk_at_64_byte_offsets(void **state)
{
	long chunks = pcpu_nr_chunks();
	char *a = pcpu_area_alloc(FIXED_AREA);
	char *b = pcpu_area_alloc(ANY_AREA);
	char *c = pcpu_area_alloc(FIXED_AREA);

	(void)state;
	assert_int_equal(pcpu_nr_chunks(), chunks + 1);
	assert_int_equal((uintptr_t)a % 64, 0);
	/* first fit, one after the other: 384 and 4224 are multiples of 64 */
	assert_ptr_equal(b, a + FIXED_AREA);
	assert_ptr_equal(c, b + ANY_AREA);
	/* CPU 1's copy lies one stride further */
	assert_ptr_equal(pcpu_area_ptr(b, 1, 0), b + BPFMEM_FAST_CPU_STRIDE);
	pcpu_area_free(a, FIXED_AREA);
	pcpu_area_free(b, ANY_AREA);
	pcpu_area_free(c, FIXED_AREA);
	assert_int_equal(pcpu_nr_chunks(), chunks);
}

static void test_allocators_of_both_kinds_share_a_chunk(void **state)
{
	static struct bpf_mem_alloc fixed, any;
	long chunks = pcpu_nr_chunks();

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&fixed, 64, false), 0);
	assert_int_equal(bpf_mem_alloc_init(&any, 0, false), 0);
	assert_int_equal(pcpu_nr_chunks(), chunks + 1);
	assert_ptr_equal((char *)any.caches, (char *)fixed.cache + FIXED_AREA);
	bpf_mem_alloc_destroy(&any);
	bpf_mem_alloc_destroy(&fixed);
	assert_int_equal(pcpu_nr_chunks(), chunks);
}

static void test_freed_area_is_handed_out_zeroed(void **state)
{
	char *keep = pcpu_area_alloc(FIXED_AREA);	/* keeps the chunk mapped */
	char *a = pcpu_area_alloc(ANY_AREA), *b;

	(void)state;
	fill_copies(a, ANY_AREA, 0xa5);
	pcpu_area_free(a, ANY_AREA);
	b = pcpu_area_alloc(ANY_AREA);
	assert_ptr_equal(b, a);
	assert_int_equal(nonzero_bytes(b, ANY_AREA), 0);
	pcpu_area_free(b, ANY_AREA);
	pcpu_area_free(keep, FIXED_AREA);
}

static void test_chunk_unmapped_when_its_last_area_is_freed(void **state)
{
	long chunks = pcpu_nr_chunks();
	struct slab_stats before, after;
	char *a = pcpu_area_alloc(FIXED_AREA);
	char *b = pcpu_area_alloc(FIXED_AREA);

	(void)state;
	assert_int_equal(pcpu_nr_chunks(), chunks + 1);
	pcpu_area_free(a, FIXED_AREA);
	assert_int_equal(pcpu_nr_chunks(), chunks + 1);
	slab_get_stats(&before);
	pcpu_area_free(b, FIXED_AREA);
	slab_get_stats(&after);
	assert_int_equal(pcpu_nr_chunks(), chunks);
	assert_int_equal(after.frees - before.frees, 2);	/* the mapping and its record */
}

static void test_full_chunk_opens_another_and_first_fit_fills_holes(void **state)
{
	long chunks = pcpu_nr_chunks();
	char *any[ANY_PER_CHUNK + 1], *small;

	(void)state;
	for (size_t i = 0; i <= ANY_PER_CHUNK; i++)
		any[i] = pcpu_area_alloc(ANY_AREA);
	assert_int_equal(pcpu_nr_chunks(), chunks + 2);
	/* 15 x 4224 leave 1984 bytes at the end of the first chunk */
	small = pcpu_area_alloc(FIXED_AREA);
	assert_ptr_equal(small, any[0] + ANY_PER_CHUNK * ANY_AREA);
	pcpu_area_free(any[3], ANY_AREA);
	assert_ptr_equal(pcpu_area_alloc(ANY_AREA), any[3]);
	for (size_t i = 0; i <= ANY_PER_CHUNK; i++)
		pcpu_area_free(any[i], ANY_AREA);
	pcpu_area_free(small, FIXED_AREA);
	assert_int_equal(pcpu_nr_chunks(), chunks);
}

/* ---- allocators over shared chunks, used from several threads ---- */

#define USERS		3
#define NR_MAS		200
#define OBJS		6

static struct bpf_mem_alloc mas[NR_MAS];
static bool live[NR_MAS];
static pthread_barrier_t round_barrier;
/* counted by the threads (cmocka asserts only on the main thread) */
static _Atomic int thread_errors;

static const size_t sizes[OBJS] = { 8, 60, 100, 300, 1000, 4000 };

/* Every live allocator: objects of every size, each stamped with its
 * address, checked and freed; prefill objects come out again too. */
static void use_every_live_allocator(void)
{
	for (int i = 0; i < NR_MAS; i++) {
		unsigned char *p[OBJS];

		if (!live[i])
			continue;
		for (int k = 0; k < OBJS; k++) {
			p[k] = bpf_mem_alloc(&mas[i], sizes[k]);
			if (!p[k]) {
				atomic_fetch_add(&thread_errors, 1);
				return;
			}
			memset(p[k], (int)(((uintptr_t)p[k] >> 3) & 0xff), sizes[k]);
		}
		for (int k = 0; k < OBJS; k++) {
			for (size_t j = 0; j < sizes[k]; j++)
				if (p[k][j] != (((uintptr_t)p[k] >> 3) & 0xff))
					atomic_fetch_add(&thread_errors, 1);
			bpf_mem_free(&mas[i], p[k]);
		}
	}
}

static void *user(void *arg)
{
	if (bpfmem_thread_attach((int)(intptr_t)arg, 0))
		atomic_fetch_add(&thread_errors, 1);
	for (int round = 0; round < 2; round++) {
		pthread_barrier_wait(&round_barrier);	/* main made allocators */
		use_every_live_allocator();
		pthread_barrier_wait(&round_barrier);	/* main destroys some */
	}
	return NULL;
}

static void shuffle(int *v, int n, unsigned int *seed)
{
	for (int i = n - 1; i > 0; i--) {
		int j = rand_r(seed) % (i + 1), t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

static void destroy_in_order(const int *order, int n)
{
	for (int i = 0; i < n; i++) {
		bpf_mem_alloc_destroy(&mas[order[i]]);
		live[order[i]] = false;
	}
}

static void test_many_allocators_used_by_threads_destroyed_in_random_order(void **state)
{
	long chunks = pcpu_nr_chunks();
	unsigned int seed = 12345;
	pthread_t th[USERS];
	int order[NR_MAS];

	(void)state;
	t_warnings = 0;
	bpfmem_set_warn_handler(t_count_warning, NULL);
	pthread_barrier_init(&round_barrier, NULL, USERS + 1);
	for (int i = 0; i < USERS; i++)
		pthread_create(&th[i], NULL, user, (void *)(intptr_t)(i + 1));
	for (int i = 0; i < NR_MAS; i++) {
		assert_int_equal(bpf_mem_alloc_init(&mas[i], 0, false), 0);
		live[i] = true;
	}
	assert_true(pcpu_nr_chunks() - chunks >= (long)((NR_MAS + ANY_PER_CHUNK - 1) / ANY_PER_CHUNK));

	/* round 1: all in use; then half destroyed, at random, and as many
	 * made again in the zeroed holes */
	pthread_barrier_wait(&round_barrier);
	pthread_barrier_wait(&round_barrier);
	for (int i = 0; i < NR_MAS; i++)
		order[i] = i;
	shuffle(order, NR_MAS, &seed);
	destroy_in_order(order, NR_MAS / 2);
	for (int i = 0; i < NR_MAS / 2; i++) {
		assert_int_equal(bpf_mem_alloc_init(&mas[order[i]], 0, false), 0);
		live[order[i]] = true;
	}

	/* round 2, then every one destroyed at random */
	pthread_barrier_wait(&round_barrier);
	pthread_barrier_wait(&round_barrier);
	for (int i = 0; i < USERS; i++)
		pthread_join(th[i], NULL);
	shuffle(order, NR_MAS, &seed);
	destroy_in_order(order, NR_MAS);
	pthread_barrier_destroy(&round_barrier);
	bpfmem_set_warn_handler(NULL, NULL);
	assert_int_equal(thread_errors, 0);
	assert_int_equal(t_warnings, 0);	/* nothing leaked, nothing lost */
	assert_int_equal(pcpu_nr_chunks(), chunks);
}

struct used_by {
	struct bpf_mem_alloc *ma;
	int cpu;
};

static void *use_on_cpu(void *arg)
{
	struct used_by *u = arg;
	void *p[200];

	if (bpfmem_thread_attach(u->cpu, 0))
		atomic_fetch_add(&thread_errors, 1);
	/* empty caches (NULL: the refill has not landed yet) and past the
	 * high watermark: refills, trims and RCU lists touched too */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 200; i++)
			p[i] = bpf_mem_alloc(u->ma, 16 + (size_t)i * 20);
		for (int i = 0; i < 200; i++)
			bpf_mem_free_rcu(u->ma, p[i]);
		bpfmem_rcu_barrier();
	}
	return NULL;
}

static void test_allocator_destroyed_after_use_leaves_its_range_zero(void **state)
{
	static struct bpf_mem_alloc keep, ma, next;
	struct used_by u[USERS];
	pthread_t th[USERS];
	void *area;

	(void)state;
	assert_int_equal(bpf_mem_alloc_init(&keep, 64, false), 0);	/* keeps the chunk */
	assert_int_equal(bpf_mem_alloc_init(&ma, 0, false), 0);
	for (int i = 0; i < USERS; i++) {
		u[i] = (struct used_by){ .ma = &ma, .cpu = 1 + i };
		pthread_create(&th[i], NULL, use_on_cpu, &u[i]);
	}
	for (int i = 0; i < USERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(thread_errors, 0);
	area = ma.caches;
	for (int i = 0; i < USERS; i++)	/* the refill thread may still write them */
		assert_int_not_equal(atomic_load(&t_cache(&ma, 0, 1 + i)->unit_size), 0);
	bpf_mem_alloc_destroy(&ma);
	assert_int_equal(nonzero_bytes(area, ANY_AREA), 0);
	/* and the next allocator gets it */
	assert_int_equal(bpf_mem_alloc_init(&next, 0, false), 0);
	assert_ptr_equal(next.caches, area);
	bpf_mem_alloc_destroy(&next);
	bpf_mem_alloc_destroy(&keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_areas_share_a_chunk_at_64_byte_offsets),
		cmocka_unit_test(test_allocators_of_both_kinds_share_a_chunk),
		cmocka_unit_test(test_freed_area_is_handed_out_zeroed),
		cmocka_unit_test(test_chunk_unmapped_when_its_last_area_is_freed),
		cmocka_unit_test(test_full_chunk_opens_another_and_first_fit_fills_holes),
		cmocka_unit_test(test_many_allocators_used_by_threads_destroyed_in_random_order),
		cmocka_unit_test(test_allocator_destroyed_after_use_leaves_its_range_zero),
	};

	return t_run(tests);
}
