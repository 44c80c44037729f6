/* SPDX-License-Identifier: MIT */
/*
 * Stress test of examples/htab: writer threads update (all three flags) and delete random
 * keys of a small key space while reader threads look them up and iterate inside RCU
 * read-side sections.  Every value is self-checking, so a reader that sees freed, reused or
 * half-written memory fails; under ASan and TSan the same run checks the memory and the
 * ordering.  Bounded by operation counts, not time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "htab.h"

#define KEYS		64	/* key space: collisions and replacements all the time */
#define MAX_ENTRIES	48	/* fewer than KEYS: inserts also meet -E2BIG */
#define WRITERS		2
#define READERS		2
#define WRITER_OPS	60000

struct val {
	uint64_t key, seq, check;
	unsigned char pad[40];	/* a 64-byte value: the copy is not one store */
};

static inline uint64_t check_of(uint64_t key, uint64_t seq)
{
	return (key * 0x9e3779b97f4a7c15ull) ^ seq;
}

static struct htab *map;
static atomic_bool writers_done;
static _Atomic long bad_values, lookups, hits, iterations, restarted_walks, results[5];
static _Atomic int warnings;

static void count_warning(const char *msg, void *arg)
{
	(void)msg;
	(void)arg;
	atomic_fetch_add(&warnings, 1);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void result(int err)
{
	static const int codes[] = { 0, -EEXIST, -ENOENT, -E2BIG };
	int i;

	for (i = 0; i < 4 && codes[i] != err; i++)
		;
	atomic_fetch_add(&results[i], 1);	/* results[4]: anything else */
}

static void *writer(void *arg)
{
	uint64_t s = 0x1234567 + (uintptr_t)arg * 7919;

	for (uint64_t i = 0; i < WRITER_OPS; i++) {
		uint32_t key = (uint32_t)(rnd(&s) % KEYS);
		uint64_t op = rnd(&s) % 4;
		struct val v = { .key = key, .seq = i };
		int err;

		v.check = check_of(key, i);
		memset(v.pad, (int)(i & 0xff), sizeof(v.pad));
		if (op == 3) {
			err = htab_delete(map, &key);
		} else {
			do
				err = htab_update(map, &key, &v, op);	/* BPF_ANY, NOEXIST, EXIST */
			while (err == -ENOMEM);	/* the cache is refilling: retry */
		}
		result(err);
	}
	return NULL;
}

static bool value_ok(const struct val *v, uint32_t key)
{
	if (v->key != key || v->check != check_of(key, v->seq))
		return false;
	for (size_t i = 0; i < sizeof(v->pad); i++)
		if (v->pad[i] != (unsigned char)(v->seq & 0xff))
			return false;
	return true;
}

static void *reader(void *arg)
{
	uint64_t s = 0xabcdef + (uintptr_t)arg;

	while (!atomic_load(&writers_done)) {
		uint32_t key = (uint32_t)(rnd(&s) % KEYS), k, next;
		long steps = 0;

		bpfmem_rcu_read_lock();
		const struct val *v = htab_lookup(map, &key);

		if (v) {
			atomic_fetch_add(&hits, 1);
			if (!value_ok(v, key))
				atomic_fetch_add(&bad_values, 1);
		}
		bpfmem_rcu_read_unlock();
		atomic_fetch_add(&lookups, 1);

		/* a walk over the keys while they change: every key it returns is
		 * valid and it fails only with -ENOENT.  It need not end: a walk
		 * whose key was deleted starts again from the first key
		 * (htab_get_next_key(), as the kernel's), so under churn it may
		 * run past the step bound; that is counted, not an error.  The
		 * quiescent walk after the writers stop must end exactly. */
		if (rnd(&s) % 64 == 0) {
			int err = htab_get_next_key(map, NULL, &k);

			while (!err && steps++ < 100000) {
				if (k >= KEYS)
					atomic_fetch_add(&bad_values, 1);
				err = htab_get_next_key(map, &k, &next);
				k = next;
			}
			/* cmocka cannot fail from this thread: count it */
			if (err && err != -ENOENT)
				atomic_fetch_add(&bad_values, 1);
			if (!err)
				atomic_fetch_add(&restarted_walks, 1);
			atomic_fetch_add(&iterations, 1);
		}
	}
	return NULL;
}

static void run(uint32_t flags)
{
	struct htab_attr a = { .key_size = 4, .value_size = sizeof(struct val),
			       .max_entries = MAX_ENTRIES, .map_flags = flags };
	pthread_t w[WRITERS], r[READERS];
	uint32_t n = 0, k, next;
	int err;

	assert_int_equal(htab_create(&a, &map), 0);
	atomic_store(&writers_done, false);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&writers_done, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);

	print_message("lookups %ld (hits %ld), iterations %ld (%ld past the step bound); "
		      "updates/deletes: ok %ld, EEXIST %ld, ENOENT %ld, E2BIG %ld, other %ld\n",
		      atomic_load(&lookups), atomic_load(&hits), atomic_load(&iterations),
		      atomic_load(&restarted_walks),
		      atomic_load(&results[0]), atomic_load(&results[1]), atomic_load(&results[2]),
		      atomic_load(&results[3]), atomic_load(&results[4]));
	assert_int_equal(atomic_load(&bad_values), 0);
	assert_int_equal(atomic_load(&results[4]), 0);
	/* every flag met both of its outcomes */
	assert_true(atomic_load(&results[1]) > 0 && atomic_load(&results[2]) > 0);
	assert_true(atomic_load(&results[3]) > 0);
	/* quiescent: iteration sees exactly the elements counted */
	for (err = htab_get_next_key(map, NULL, &k); !err; err = htab_get_next_key(map, &k, &next), k = next)
		n++;
	assert_int_equal(n, htab_count(map));
	assert_true(n <= MAX_ENTRIES);
	htab_destroy(map);
	assert_int_equal(atomic_load(&warnings), 0);
	for (int i = 0; i < 5; i++)
		atomic_store(&results[i], 0);
	atomic_store(&restarted_walks, 0);
}

static void test_concurrent_readers_and_writers_on_bpfmem_map(void **state)
{
	run(BPF_F_NO_PREALLOC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_concurrent_readers_and_writers_on_bpfmem_map),
	};

	bpfmem_set_warn_handler(count_warning, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
