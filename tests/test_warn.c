/* SPDX-License-Identifier: MIT */
/*
 * The warning hook: a user handler receives each message with its argument;
 * NULL restores the default, one line on stderr.
 */
#include "helpers.h"

#include <fcntl.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_custom_handler_receives_message_and_arg),
		cmocka_unit_test(test_custom_handler_receives_library_warnings),
		cmocka_unit_test(test_latest_handler_wins),
		cmocka_unit_test(test_null_handler_restores_default_one_line_on_stderr),
		cmocka_unit_test(test_default_handler_keeps_a_long_message_on_one_line),
	};

	return t_run(tests);
}
