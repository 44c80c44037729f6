/* SPDX-License-Identifier: MIT */
/*
 * WARN_ONCE / WARN_ON_ONCE: report through the user's warning hook
 * (bpfmem_set_warn_handler), never abort.  Safe in signal handlers: the
 * message is formatted on the stack by warn_format() (no vsnprintf, which
 * POSIX does not list as async-signal-safe), the hook is read without a
 * lock, and the default hook is one write(2).
 */
#ifndef BPFMEM_KERNEL_BUG_H
#define BPFMEM_KERNEL_BUG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include "compiler.h"

/*
 * AS.  printf-style formatting restricted to what warnings need:
 * %s %d %u %x %ld %lu %lx %zu %zx %p %%, without flags, width or
 * precision (the format attribute still checks argument types).  Anything
 * else ends the message with "<bad format>" instead of guessing at the
 * argument.  Always NUL-terminates (size > 0); returns the length written.
 */
__attribute__((format(printf, 3, 0)))
size_t warn_vformat(char *buf, size_t size, const char *fmt, va_list ap) __hidden;
__attribute__((format(printf, 3, 4)))
size_t warn_format(char *buf, size_t size, const char *fmt, ...) __hidden;

/* AS.  Format and hand the message to the current warning hook. */
__attribute__((format(printf, 1, 2))) __cold
void bpfmem_warn(const char *fmt, ...) __hidden;

void warn_before_fork(void) __hidden;
void warn_after_fork_parent(void) __hidden;
void warn_after_fork_child(void) __hidden;

#define WARN_ONCE(cond, ...) ({						\
	static bool __warned;						\
	bool __c = !!(cond);						\
	if (unlikely(__c) && !__atomic_exchange_n(&__warned, true, __ATOMIC_RELAXED)) \
		bpfmem_warn(__VA_ARGS__);				\
	__c;								\
})

#define WARN_ON_ONCE(cond) WARN_ONCE(cond, "WARN_ON_ONCE(%s) at %s:%d", #cond, __FILE__, __LINE__)

#endif /* BPFMEM_KERNEL_BUG_H */
