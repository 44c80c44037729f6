/* SPDX-License-Identifier: MIT */
/*
 * WARN_ON / WARN_ON_ONCE: report through the user's warning hook
 * (bpfmem_set_warn_handler), never abort.  Safe in signal handlers: the
 * message is formatted on the stack and the default hook is one write(2).
 */
#ifndef BPFMEM_KERNEL_BUG_H
#define BPFMEM_KERNEL_BUG_H

#include <stdbool.h>
#include "compiler.h"

__attribute__((format(printf, 1, 2))) __cold
void bpfmem_warn(const char *fmt, ...);

#define WARN(cond, ...) ({						\
	bool __c = !!(cond);						\
	if (unlikely(__c))						\
		bpfmem_warn(__VA_ARGS__);				\
	__c;								\
})

#define WARN_ONCE(cond, ...) ({						\
	static bool __warned;						\
	bool __c = !!(cond);						\
	if (unlikely(__c) && !__atomic_exchange_n(&__warned, true, __ATOMIC_RELAXED)) \
		bpfmem_warn(__VA_ARGS__);				\
	__c;								\
})

#define WARN_ON(cond)	   WARN(cond, "WARN_ON(%s) at %s:%d", #cond, __FILE__, __LINE__)
#define WARN_ON_ONCE(cond) WARN_ONCE(cond, "WARN_ON_ONCE(%s) at %s:%d", #cond, __FILE__, __LINE__)

#endif /* BPFMEM_KERNEL_BUG_H */
