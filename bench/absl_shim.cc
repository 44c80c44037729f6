// SPDX-License-Identifier: MIT
// The one C++ file of the benchmark: abseil's LowLevelAlloc has a C++ API only.
// One arena with kAsyncSignalSafe, the mode meant for signal handlers.
#include <absl/base/internal/low_level_alloc.h>

#include "absl_shim.h"

using absl::base_internal::LowLevelAlloc;

static LowLevelAlloc::Arena *arena;

bool bench_absl_init(void)
{
	if (!arena)
		arena = LowLevelAlloc::NewArena(LowLevelAlloc::kAsyncSignalSafe);
	return arena != nullptr;
}

void *bench_absl_alloc(size_t size)
{
	return LowLevelAlloc::AllocWithArena(size, arena);
}

void bench_absl_free(void *p)
{
	LowLevelAlloc::Free(p);
}
