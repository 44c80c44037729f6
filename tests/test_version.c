/* SPDX-License-Identifier: MIT */
/*
 * Version: the header's BPFMEM_VERSION_* macros come from CMake's project()
 * version, and bpfmem_version() returns the same version as a string.
 */
#include "helpers.h"

static void test_version_macros_equal_the_cmake_project_version(void **state)
{
	char macros[64];

	snprintf(macros, sizeof(macros), "%d.%d.%d", BPFMEM_VERSION_MAJOR, BPFMEM_VERSION_MINOR,
		 BPFMEM_VERSION_PATCH);
	assert_string_equal(macros, BPFMEM_PROJECT_VERSION);
}

static void test_version_string_equals_the_header_macros(void **state)
{
	char macros[64];

	snprintf(macros, sizeof(macros), "%d.%d.%d", BPFMEM_VERSION_MAJOR, BPFMEM_VERSION_MINOR,
		 BPFMEM_VERSION_PATCH);
	assert_non_null(bpfmem_version());
	assert_string_equal(bpfmem_version(), macros);
}

static void test_version_string_is_the_same_pointer_every_call(void **state)
{
	assert_ptr_equal(bpfmem_version(), bpfmem_version());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_macros_equal_the_cmake_project_version),
		cmocka_unit_test(test_version_string_equals_the_header_macros),
		cmocka_unit_test(test_version_string_is_the_same_pointer_every_call),
	};

	return t_run(tests);
}
