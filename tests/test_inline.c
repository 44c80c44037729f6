/* SPDX-License-Identifier: MIT */
/*
 * BPFMEM_INLINE: the fast paths <bpfmem.h> inlines into a program.  Every
 * other test calls the library; this one is compiled with the macro, so
 * bpf_mem_cache_alloc() and the three others below are the inlined ones,
 * and (bpf_mem_cache_alloc)(...) in parentheses is the library's.  The two
 * must be interchangeable object by object, and the inlined one must leave
 * to the library every case that is not its fast path.
 */
#define BPFMEM_INLINE
#include "helpers.h"

#define FIXED_SIZE 64

static struct bpf_mem_alloc fixed_ma, any_ma;

static int setup(void **state)
{
	if (t_attach_cpu0(state))
		return -1;
	if (bpf_mem_alloc_init(&fixed_ma, FIXED_SIZE, false) ||
	    bpf_mem_alloc_init(&any_ma, 0, false))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	bpf_mem_alloc_destroy(&fixed_ma);
	bpf_mem_alloc_destroy(&any_ma);
	return 0;
}

/* The size class of an any-size object, as the library sees it. */
static int class_of(const void *p)
{
	return t_class_idx(atomic_load(&t_owner(p)->unit_size));
}

static void test_inline_alloc_takes_the_head_of_this_cpus_list(void **state)
{
	struct bpf_mem_cache *c = t_cache(&fixed_ma, 0, 0);
	void *head, *p;
	int cnt;

	(void)state;
	/* set up with a free: the list now starts with p */
	p = (bpf_mem_cache_alloc)(&fixed_ma);
	assert_non_null(p);
	(bpf_mem_cache_free)(&fixed_ma, p);
	irq_work_flush();
	cnt = t_free_cnt(c);
	head = (char *)c->free_llist.first + T_HDR;
	assert_ptr_equal(head, p);
	assert_true(cnt > c->alloc_floor);

	p = bpf_mem_cache_alloc(&fixed_ma);
	assert_ptr_equal(p, head);
	assert_int_equal(t_free_cnt(c), cnt - 1);
	assert_ptr_equal(t_owner(p), c);
	bpf_mem_cache_free(&fixed_ma, p);
	assert_int_equal(t_free_cnt(c), cnt);
	assert_ptr_equal((char *)c->free_llist.first + T_HDR, p);
	assert_ptr_equal(atomic_load(&c->tgt), c);
}

static void test_inline_and_library_calls_share_one_lifo_list(void **state)
{
	void *a, *b;

	(void)state;
	a = bpf_mem_cache_alloc(&fixed_ma);
	assert_non_null(a);
	(bpf_mem_cache_free)(&fixed_ma, a);
	b = bpf_mem_cache_alloc(&fixed_ma);
	assert_ptr_equal(b, a);
	bpf_mem_cache_free(&fixed_ma, b);
	b = (bpf_mem_cache_alloc)(&fixed_ma);
	assert_ptr_equal(b, a);
	(bpf_mem_cache_free)(&fixed_ma, b);

	a = bpf_mem_alloc(&any_ma, 100);
	assert_non_null(a);
	(bpf_mem_free)(&any_ma, a);
	b = bpf_mem_alloc(&any_ma, 100);
	assert_ptr_equal(b, a);
	bpf_mem_free(&any_ma, b);
	b = (bpf_mem_alloc)(&any_ma, 100);
	assert_ptr_equal(b, a);
	(bpf_mem_free)(&any_ma, b);
}

static void test_inline_any_size_picks_the_librarys_class_for_every_size(void **state)
{
	int idx;

	(void)state;
	for (size_t size = 1; size <= BPFMEM_ALLOC_SIZE_MAX - T_HDR; size++) {
		void *in = bpf_mem_alloc(&any_ma, size);
		void *out = (bpf_mem_alloc)(&any_ma, size);

		assert_non_null(in);
		assert_non_null(out);
		assert_int_equal(class_of(in), class_of(out));
		assert_true(atomic_load(&t_owner(in)->unit_size) >= (int)(size + T_HDR));
		/* freed inline into the class the header names (read first: the
		 * header of a free object is its list link) */
		idx = class_of(out);
		bpf_mem_free(&any_ma, out);
		assert_ptr_equal((char *)t_cache(&any_ma, idx, 0)->free_llist.first + T_HDR, out);
		bpf_mem_free(&any_ma, in);
		if (size % 64 == 0)
			irq_work_flush();
	}
}

/* The table the library and inlined calls look classes up in, and the
 * function the compiler folds for a size it knows, at every size. */
static void test_class_table_and_folded_class_agree_at_every_size(void **state)
{
	(void)state;
	for (size_t size = 1; size <= BPFMEM_ALLOC_SIZE_MAX; size++)
		assert_int_equal((size_t)_bpfmem_size_class(size) * BPFMEM_FAST_CLASS_SIZE,
				 BPFMEM_FAST_CLASS_OFF[(size + 7) / 8]);
}

/* Sizes the compiler knows (the folded class), at the edges of every class:
 * the inlined call picks the class the library picks. */
#define EDGE_SIZES(X)								\
	X(1) X(8) X(9) X(24) X(25) X(56) X(57) X(88) X(89) X(120) X(121)	\
	X(184) X(185) X(248) X(249) X(504) X(505) X(1016) X(1017) X(2040)	\
	X(2041) X(4088)
#define CHECK_EDGE(n)								\
	do {									\
		void *in = bpf_mem_alloc(&any_ma, (n));				\
		void *out = (bpf_mem_alloc)(&any_ma, (size_t)edge[i++]);	\
										\
		assert_non_null(in);						\
		assert_non_null(out);						\
		assert_int_equal(class_of(in), class_of(out));			\
		bpf_mem_free(&any_ma, in);					\
		bpf_mem_free(&any_ma, out);					\
	} while (0);
#define EDGE_VALUE(n) (n),

static void test_inline_any_size_with_a_constant_size_picks_the_librarys_class(void **state)
{
	/* volatile: the library's call gets sizes the compiler does not know */
	static volatile int edge[] = { EDGE_SIZES(EDGE_VALUE) };
	int i = 0;

	(void)state;
	EDGE_SIZES(CHECK_EDGE)
	assert_int_equal(i, sizeof(edge) / sizeof(edge[0]));
}

static void test_inline_bad_input_gives_what_the_library_gives(void **state)
{
	static struct bpf_mem_alloc zeroed, percpu;
	void *p;

	(void)state;
	assert_null(bpf_mem_alloc(&any_ma, 0));
	assert_null(bpf_mem_alloc(&any_ma, BPFMEM_ALLOC_SIZE_MAX - T_HDR + 1));
	assert_null(bpf_mem_alloc(&any_ma, (size_t)-1));
	assert_null(bpf_mem_alloc(NULL, 8));
	assert_null(bpf_mem_cache_alloc(NULL));
	assert_null(bpf_mem_alloc(&zeroed, 8));
	assert_null(bpf_mem_cache_alloc(&zeroed));
	bpf_mem_free(&any_ma, NULL);
	bpf_mem_cache_free(&fixed_ma, NULL);
	bpf_mem_free(NULL, NULL);
	bpf_mem_cache_free(&zeroed, NULL);

	/* per-CPU any-size objects: the library's path, unit headers and all */
	assert_int_equal(bpf_mem_alloc_percpu_init(&percpu, NULL), 0);
	assert_int_equal(bpf_mem_alloc_percpu_unit_init(&percpu, 32), 0);
	p = bpf_mem_alloc(&percpu, 24);
	assert_non_null(p);
	assert_int_equal(atomic_load(&t_owner(p)->unit_size), 32);
	bpf_mem_free(&percpu, p);
	assert_ptr_equal(bpf_mem_alloc(&percpu, 24), p);
	bpf_mem_free(&percpu, p);
	bpf_mem_alloc_destroy(&percpu);
}

/* A handler that interrupted this thread inside the cache holds `active`:
 * the inlined code must leave the list alone and let the library decide. */
static void test_inline_leaves_a_cache_held_by_this_thread_to_the_library(void **state)
{
	struct bpf_mem_cache *c = t_cache(&fixed_ma, 0, 0);
	void *p, *q;
	int cnt;

	(void)state;
	p = bpf_mem_cache_alloc(&fixed_ma);
	assert_non_null(p);
	irq_work_flush();
	cnt = t_free_cnt(c);
	c->active.counter = 1;
	/* a re-entrant allocation does not touch this list (the library
	 * serves it from the shared CPU, or fails) ... */
	q = bpf_mem_cache_alloc(&fixed_ma);
	assert_int_equal(t_free_cnt(c), cnt);
	if (q)
		assert_ptr_not_equal(t_owner(q), c);
	/* ... nor does a re-entrant free: the library parks it on the atomic
	 * list, which the refill thread may already have drained */
	bpf_mem_cache_free(&fixed_ma, p);
	assert_int_equal(c->active.counter, 1);
	assert_int_equal(t_free_cnt(c), cnt);
	assert_ptr_not_equal((char *)c->free_llist.first + T_HDR, p);
	c->active.counter = 0;
	bpf_mem_cache_free(&fixed_ma, q);
	irq_work_flush();
	q = bpf_mem_cache_alloc(&fixed_ma);
	assert_non_null(q);
	bpf_mem_cache_free(&fixed_ma, q);
}

/* The same run of calls, inlined on CPU 2 and through the library on CPU 3,
 * leaves both caches with the same counts: the watermarks are the library's.
 * Readers hold both grace periods meanwhile: trimmed objects then wait on
 * the tasks-trace lists until the refill recycles them, whenever the grace
 * periods would have ended, so both runs recycle the same objects. */
struct run {
	bool inlined;
	int cpu;
	int nulls;
	struct bpfmem_cache_stats st;
};

static void *run_calls(void *arg)
{
	static void *held[4][600];
	struct run *r = arg;
	void **h = held[r->cpu];

	if (bpfmem_thread_attach(r->cpu, 0))
		return NULL;
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 600; i++) {
			h[i] = r->inlined ? bpf_mem_cache_alloc(&fixed_ma)
					  : (bpf_mem_cache_alloc)(&fixed_ma);
			if (!h[i])
				r->nulls++;
			/* every refill this raised is done before the next call */
			irq_work_flush();
		}
		for (int i = 0; i < 600; i++) {
			if (r->inlined)
				bpf_mem_cache_free(&fixed_ma, h[i]);
			else
				(bpf_mem_cache_free)(&fixed_ma, h[i]);
			irq_work_flush();
		}
	}
	return NULL;
}

static void test_inline_calls_keep_the_librarys_watermarks(void **state)
{
	struct run in = { .inlined = true, .cpu = 2 }, out = { .inlined = false, .cpu = 3 };
	struct t_reader *rcu = t_reader_enter(false), *trace = t_reader_enter(true);
	struct bpf_mem_cache *ci, *co;
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, run_calls, &in), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, run_calls, &out), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	irq_work_flush();
	t_reader_leave(trace);
	t_reader_leave(rcu);
	ci = t_cache(&fixed_ma, 0, in.cpu);
	co = t_cache(&fixed_ma, 0, out.cpu);
	assert_int_equal(in.nulls, 0);
	assert_int_equal(out.nulls, 0);
	assert_int_equal(t_free_cnt(ci), t_free_cnt(co));
	assert_in_range(t_free_cnt(ci), 1, ci->high_watermark);
	assert_int_equal(atomic_load(&ci->trims), atomic_load(&co->trims));
	assert_true(atomic_load(&ci->trims) > 0);
}

/* A thread that never attached has no CPU of its own: the inlined code
 * calls the library, which attaches it. */
static void *unattached(void *arg)
{
	void **out = arg;

	out[0] = bpf_mem_cache_alloc(&fixed_ma);
	out[1] = (void *)(intptr_t)bpfmem_current_cpu();
	bpf_mem_cache_free(&fixed_ma, out[0]);
	return NULL;
}

static void test_inline_call_on_an_unattached_thread_attaches_it(void **state)
{
	void *out[2] = { NULL, (void *)(intptr_t)-1 };
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, unattached, out), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_non_null(out[0]);
	assert_true((intptr_t)out[1] >= 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inline_alloc_takes_the_head_of_this_cpus_list),
		cmocka_unit_test(test_inline_and_library_calls_share_one_lifo_list),
		cmocka_unit_test(test_inline_any_size_picks_the_librarys_class_for_every_size),
		cmocka_unit_test(test_class_table_and_folded_class_agree_at_every_size),
		cmocka_unit_test(test_inline_any_size_with_a_constant_size_picks_the_librarys_class),
		cmocka_unit_test(test_inline_bad_input_gives_what_the_library_gives),
		cmocka_unit_test(test_inline_leaves_a_cache_held_by_this_thread_to_the_library),
		cmocka_unit_test(test_inline_calls_keep_the_librarys_watermarks),
		cmocka_unit_test(test_inline_call_on_an_unattached_thread_attaches_it),
	};

	return t_run_group(tests, setup, teardown);
}
