/* SPDX-License-Identifier: MIT */
/*
 * The thread-exit destructor when the library's pthread key is one whose
 * pthread_setspecific allocates (glibc: 32 and above, as in a large program
 * that created many keys first): a thread whose first call into the
 * library is in a signal handler must attach without malloc, and its
 * virtual CPU must still be freed once the thread is gone.
 *
 * The constructor below runs before the library's (priority 101 before the
 * default), so the library's key comes after 40 others.  Every malloc,
 * calloc and realloc is counted while the flag `counting` is set: through
 * the sanitizer's allocation hook in sanitizer builds, otherwise by
 * interposing the three functions over glibc's.  The flag is per thread
 * (the refill thread allocates meanwhile) and in the executable's own TLS,
 * which needs no allocation either.
 */
#include "helpers.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILLER_KEYS 40

static pthread_key_t filler[FILLER_KEYS];
/* Per thread: the refill thread allocates meanwhile.  volatile: the
 * compiler takes malloc for a builtin that reads no user memory, and would
 * drop the stores around the calls. */
static __thread volatile bool counting;
static atomic_long allocations;

__attribute__((constructor(101))) static void take_the_low_keys(void)
{
	for (int i = 0; i < FILLER_KEYS; i++)
		if (pthread_key_create(&filler[i], NULL))
			abort();
}

static void count_allocation(void)
{
	if (counting)
		atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));

static void on_malloc(const volatile void *p, size_t size)
{
	count_allocation();
}

static void on_free(const volatile void *p)
{
}

__attribute__((constructor(102))) static void install_hooks(void)
{
	__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

void *malloc(size_t size)
{
	count_allocation();
	return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
	count_allocation();
	return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
	count_allocation();
	return __libc_realloc(p, size);
}
#endif

static pthread_key_t key_after_library;
static struct bpf_mem_alloc ma;
static volatile int handler_cpu;

/* The premise: the library's key came right after the fillers, so it is
 * at least FILLER_KEYS, beyond glibc's first level. */
static void test_library_key_is_beyond_the_first_level(void **state)
{
	assert_true(filler[FILLER_KEYS - 1] >= 32);
	assert_int_equal(key_after_library, filler[FILLER_KEYS - 1] + 2);
}

/* And why it matters: here the first set of such a key in a thread
 * allocates, and the counter sees it. */
static void *set_high_key(void *unused)
{
	counting = true;
	pthread_setspecific(filler[FILLER_KEYS - 1], (void *)1);
	counting = false;
	return NULL;
}

static void test_first_set_of_a_high_key_allocates(void **state)
{
	pthread_t t;

	atomic_store(&allocations, 0);
	assert_int_equal(pthread_create(&t, NULL, set_high_key, NULL), 0);
	pthread_join(t, NULL);
	assert_true(atomic_load(&allocations) > 0);
}

static void alloc_in_handler(int sig)
{
	void *p;

	counting = true;
	p = bpf_mem_cache_alloc(&ma);
	handler_cpu = bpfmem_current_cpu();
	bpf_mem_cache_free(&ma, p);
	counting = false;
}

static volatile pid_t handler_tid;

/* The thread's only contact with the library is the handler. */
static void *attach_in_handler(void *unused)
{
	handler_tid = (pid_t)syscall(SYS_gettid);
	pthread_kill(pthread_self(), SIGUSR1);
	return NULL;
}

static void test_attach_in_a_handler_does_not_allocate_and_the_cpu_is_freed_after_exit(void **state)
{
	struct sigaction sa = { .sa_handler = alloc_in_handler };
	pthread_t t;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	handler_cpu = -1;
	atomic_store(&allocations, 0);

	assert_int_equal(pthread_create(&t, NULL, attach_in_handler, NULL), 0);
	pthread_join(t, NULL);
	/* pthread_join returns when the kernel clears the thread's tid word,
	 * a moment before it forgets the thread: "gone" is the latter */
	while (syscall(SYS_tgkill, getpid(), handler_tid, 0) == 0)
		sched_yield();

	assert_int_equal(atomic_load(&allocations), 0);
	assert_true(handler_cpu >= 0);
	assert_int_not_equal(handler_cpu, bpfmem_current_cpu());
	/* the thread is gone: its virtual CPU can be taken */
	assert_int_equal(bpfmem_thread_attach(handler_cpu, 0), 0);
	assert_int_equal(bpfmem_current_cpu(), handler_cpu);
	bpf_mem_alloc_destroy(&ma);
	signal(SIGUSR1, SIG_DFL);
}

/* A thread that attached in a handler and then attaches explicitly
 * (process context) gets its destructor armed: the CPU is free as soon as
 * the thread has exited, with nobody having to look. */
static void *attach_in_handler_then_explicitly(void *arg)
{
	pthread_kill(pthread_self(), SIGUSR1);
	*(int *)arg = bpfmem_thread_attach(handler_cpu, 0);
	return NULL;
}

static void test_explicit_attach_after_a_handler_attach_arms_the_destructor(void **state)
{
	struct sigaction sa = { .sa_handler = alloc_in_handler };
	struct bpfmem_cache_stats st = { .sz = sizeof(st) };
	pthread_t t;
	int err = -1;

	assert_int_equal(bpf_mem_alloc_init(&ma, 64, false), 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	handler_cpu = -1;
	assert_int_equal(pthread_create(&t, NULL, attach_in_handler_then_explicitly, &err), 0);
	pthread_join(t, NULL);
	assert_int_equal(err, 0);
	assert_true(handler_cpu >= 0);
	/* nobody reaps here: only the destructor can have freed it */
	assert_int_equal(bpfmem_thread_attach(handler_cpu, 0), 0);
	assert_int_equal(bpfmem_cache_stats(&ma, 0, &st), 0);
	bpf_mem_alloc_destroy(&ma);
	signal(SIGUSR1, SIG_DFL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_library_key_is_beyond_the_first_level),
		cmocka_unit_test(test_first_set_of_a_high_key_allocates),
		cmocka_unit_test(test_attach_in_a_handler_does_not_allocate_and_the_cpu_is_freed_after_exit),
		cmocka_unit_test(test_explicit_attach_after_a_handler_attach_arms_the_destructor),
	};

	if (pthread_key_create(&key_after_library, NULL))
		abort();
	return t_run(tests);
}
