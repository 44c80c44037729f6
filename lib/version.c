/* SPDX-License-Identifier: MIT */
/* The library's version string, spelled from the header's version macros at build time. */
#include <bpfmem.h>
#include "kernel/compiler.h"

#define BPFMEM_STR_(x)	#x
#define BPFMEM_STR(x)	BPFMEM_STR_(x)

__public const char *bpfmem_version(void)
{
	return BPFMEM_STR(BPFMEM_VERSION_MAJOR) "." BPFMEM_STR(BPFMEM_VERSION_MINOR) "."
	       BPFMEM_STR(BPFMEM_VERSION_PATCH);
}
