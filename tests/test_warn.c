/* SPDX-License-Identifier: MIT */
/*
 * The warning hook: a user handler receives each message with its argument;
 * NULL restores the default, one line on stderr.
 */
#include "helpers.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <unistd.h>

#include "kernel/bug.h"

/* Warns `msg` with fd 2 redirected into a pipe; returns
 * what was written there (NUL-terminated, at most size - 1 bytes). */
static size_t warn_to_stderr_captured(char *buf, size_t size, const char *msg)
{
	int fds[2], saved = dup(STDERR_FILENO);
	ssize_t n;

	assert_true(saved >= 0);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
	bpfmem_warn("%s", msg);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], buf, size - 1);
	close(fds[0]);
	assert_true(n >= 0);
	buf[n] = '\0';
	return (size_t)n;
}

static int count_char(const char *s, char c)
{
	int n = 0;

	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_custom_handler_receives_message_and_arg(void **state)
{
	struct t_warn_log log;

	t_warn_start(&log);
	bpfmem_warn("value %d of %s", 42, "answer");
	assert_int_equal(t_warn_stop(&log), 1);
	assert_string_equal(log.msg[0], "value 42 of answer");
}

static void test_custom_handler_receives_library_warnings(void **state)
{
	static struct bpf_mem_alloc ma;
	struct t_warn_log log;
	void *p;

	assert_int_equal(bpf_mem_alloc_init(&ma, 32, false), 0);
	p = bpf_mem_cache_alloc(&ma);
	assert_non_null(p);
	t_warn_start(&log);
	bpf_mem_alloc_destroy(&ma);	/* p leaked: destroy warns */
	assert_int_equal(t_warn_stop(&log), 1);
	assert_non_null(strstr(log.msg[0], "1"));
	memset(p, 0, 8);	/* leaked units stay mapped (lib/kernel/slab.c) */
}

static void test_latest_handler_wins(void **state)
{
	struct t_warn_log first, second;

	t_warn_start(&first);
	t_warn_start(&second);
	bpfmem_warn("to the second");
	assert_int_equal(t_warn_stop(&second), 1);
	assert_int_equal(first.n, 0);
	assert_string_equal(second.msg[0], "to the second");
}

static void test_null_handler_restores_default_one_line_on_stderr(void **state)
{
	struct t_warn_log log;
	char out[1024];
	size_t n;

	t_warn_start(&log);
	bpfmem_set_warn_handler(NULL, NULL);
	n = warn_to_stderr_captured(out, sizeof(out), "hello world");
	assert_int_equal(log.n, 0);
	assert_true(n > 0);
	assert_non_null(strstr(out, "hello world"));
	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[n - 1], '\n');
}

static void test_default_handler_keeps_a_long_message_on_one_line(void **state)
{
	char msg[1001], out[4096];
	size_t n;

	memset(msg, 'x', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	bpfmem_set_warn_handler(NULL, NULL);
	n = warn_to_stderr_captured(out, sizeof(out), msg);
	assert_true(n > 100);
	assert_int_equal(count_char(out, '\n'), 1);
	assert_int_equal(out[n - 1], '\n');
}

/* ---- the async-signal-safe formatter ---- */

#define T_FMT(expect, ...) do {						\
	char __b[128];							\
	size_t __n = warn_format(__b, sizeof(__b), __VA_ARGS__);	\
	assert_string_equal(__b, expect);				\
	assert_int_equal(__n, strlen(expect));				\
} while (0)

static void test_format_prints_each_supported_conversion_like_printf(void **state)
{
	T_FMT("a 42 -7 b", "a %d %d b", 42, -7);
	T_FMT("-2147483648 2147483647", "%d %d", INT_MIN, INT_MAX);
	T_FMT("4294967295 ff", "%u %x", UINT_MAX, 255u);
	T_FMT("-9223372036854775808", "%ld", LONG_MIN);
	T_FMT("18446744073709551615 7fffffffffffffff", "%lu %lx", ULONG_MAX, (unsigned long)LONG_MAX);
	T_FMT("18446744073709551615 0 1f", "%zu %zu %zx", SIZE_MAX, (size_t)0, (size_t)31);
	T_FMT("0x1234abcd (nil)", "%p %p", (void *)0x1234abcd, NULL);
	const char *volatile no_str = NULL;	/* volatile: gcc warns on a literal NULL */

	T_FMT("str (null) 100%", "%s %s 100%%", "str", no_str);
	T_FMT("WARN_ON_ONCE(x) at f.c:12", "WARN_ON_ONCE(%s) at %s:%d", "x", "f.c", 12);
}

static void test_format_truncates_to_the_buffer_and_terminates(void **state)
{
	char b[8];

	memset(b, '#', sizeof(b));
	assert_int_equal(warn_format(b, sizeof(b), "%s-%d", "abcdef", 12345), 7);
	assert_string_equal(b, "abcdef-");
	assert_int_equal(warn_format(b, 1, "%d", 5), 0);
	assert_string_equal(b, "");
}

/* Unknown conversions: the argument's type is unknown, so nothing after
 * it can be read safely; the message says so instead. */
static void test_format_stops_at_an_unsupported_conversion(void **state)
{
	char b[64];
	const char *fmt = "n=%d f=%f then %s";

	warn_format(b, sizeof(b), fmt, 3, 1.5, "x");
	assert_string_equal(b, "n=3 f=<bad format>");
}

/* ---- switching hooks while other threads warn ---- */

struct t_hook_check {
	atomic_long calls, mismatches;
};

static struct t_hook_check hook_check;
static atomic_bool switching;
static char hook_tokens[3];

/* Each hook is installed only with its own token as the argument. */
#define T_HOOK(i)							\
static void t_hook_##i(const char *msg, void *arg)			\
{									\
	atomic_fetch_add(&hook_check.calls, 1);				\
	if (arg != &hook_tokens[i])					\
		atomic_fetch_add(&hook_check.mismatches, 1);		\
}
T_HOOK(0)
T_HOOK(1)
T_HOOK(2)

static void (*const t_hooks[3])(const char *, void *) = { t_hook_0, t_hook_1, t_hook_2 };

static void *t_warner(void *unused)
{
	while (atomic_load(&switching))
		bpfmem_warn("w");
	return NULL;
}

static void test_switching_handlers_never_pairs_a_handler_with_another_arg(void **state)
{
	pthread_t th[2];

	bpfmem_set_warn_handler(t_hooks[0], &hook_tokens[0]);
	atomic_store(&switching, true);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, t_warner, NULL), 0);
	while (atomic_load(&hook_check.calls) < 100)
		sched_yield();
	for (int i = 1; i < 30000; i++)
		bpfmem_set_warn_handler(t_hooks[i % 3], &hook_tokens[i % 3]);
	atomic_store(&switching, false);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	bpfmem_set_warn_handler(NULL, NULL);
	assert_int_equal(atomic_load(&hook_check.mismatches), 0);
}

/* A hook may install another one (e.g. to restore the default after the
 * first report): the writer never waits for its own caller. */
static void t_hook_replaces_itself(const char *msg, void *arg)
{
	(*(int *)arg)++;
	bpfmem_set_warn_handler(NULL, NULL);
}

static void test_handler_may_replace_itself(void **state)
{
	int calls = 0;
	char out[256];

	bpfmem_set_warn_handler(t_hook_replaces_itself, &calls);
	bpfmem_warn("first");
	assert_int_equal(calls, 1);
	warn_to_stderr_captured(out, sizeof(out), "second");
	assert_string_equal(out, "libbpfmem: second\n");
	assert_int_equal(calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_custom_handler_receives_message_and_arg),
		cmocka_unit_test(test_custom_handler_receives_library_warnings),
		cmocka_unit_test(test_latest_handler_wins),
		cmocka_unit_test(test_null_handler_restores_default_one_line_on_stderr),
		cmocka_unit_test(test_default_handler_keeps_a_long_message_on_one_line),
		cmocka_unit_test(test_format_prints_each_supported_conversion_like_printf),
		cmocka_unit_test(test_format_truncates_to_the_buffer_and_terminates),
		cmocka_unit_test(test_format_stops_at_an_unsupported_conversion),
		cmocka_unit_test(test_switching_handlers_never_pairs_a_handler_with_another_arg),
		cmocka_unit_test(test_handler_may_replace_itself),
	};

	return t_run(tests);
}
