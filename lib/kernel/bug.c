/* SPDX-License-Identifier: MIT */
/* The warning hook: where WARN_ON reports go. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bug.h"

struct warn_hook {
	void (*fn)(const char *msg, void *arg);
	void *arg;
};

/* Replaced whole (one pointer store) so a handler never sees fn of one hook
 * with arg of another. */
static struct warn_hook default_hook;
static _Atomic(struct warn_hook *) hook = &default_hook;
static struct warn_hook user_hooks[2];
static int user_hook_next;

void bpfmem_warn(const char *fmt, ...)
{
	struct warn_hook *h = atomic_load_explicit(&hook, memory_order_acquire);
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (h->fn) {
		h->fn(msg, h->arg);
		return;
	}
	/* default: one line on stderr, a single write so lines never interleave */
	char line[sizeof(msg) + 16];
	int n = snprintf(line, sizeof(line), "libbpfmem: %s\n", msg);

	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	ssize_t ignored = write(STDERR_FILENO, line, n);
	(void)ignored;
}

__public void bpfmem_set_warn_handler(void (*fn)(const char *msg, void *arg), void *arg)
{
	struct warn_hook *h = &default_hook;

	if (fn) {
		/* two slots: the one not currently published is free to rewrite */
		h = &user_hooks[user_hook_next];
		user_hook_next ^= 1;
		h->fn = fn;
		h->arg = arg;
	}
	atomic_store_explicit(&hook, h, memory_order_release);
}
