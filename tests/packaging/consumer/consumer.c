/* SPDX-License-Identifier: MIT */
/* Consumer of an installed libbpfmem: every size class of an any-size allocator, through the
 * public header only.  Exits 0 only if each allocation, free and teardown behaves. */
#include <bpfmem.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

static int warnings;

static void count_warning(const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "consumer: libbpfmem warning: %s\n", msg);
	warnings++;
}

int main(void)
{
	static const size_t sizes[] = { 1, 8, 24, 56, 88, 120, 184, 248, 504, 1016, 2040, 4088 };
	void *objs[sizeof(sizes) / sizeof(sizes[0])];
	struct bpf_mem_alloc ma;
	unsigned int i;
	char version[64];

	/* the installed header and the installed library are one release */
	snprintf(version, sizeof(version), "%d.%d.%d", BPFMEM_VERSION_MAJOR, BPFMEM_VERSION_MINOR,
		 BPFMEM_VERSION_PATCH);
	if (strcmp(bpfmem_version(), version)) {
		fprintf(stderr, "consumer: library version %s, header version %s\n",
			bpfmem_version(), version);
		return 1;
	}
	bpfmem_set_warn_handler(count_warning, NULL);
	memset(&ma, 0, sizeof(ma));
	if (bpf_mem_alloc_init(&ma, 0, false) || bpfmem_nr_size_classes(&ma) != 11) {
		fprintf(stderr, "consumer: cannot set up an any-size allocator\n");
		return 1;
	}
	if (bpf_mem_alloc_check_size(false, 4088) != 0 ||
	    bpf_mem_alloc_check_size(false, 4089) != -E2BIG) {
		fprintf(stderr, "consumer: bpf_mem_alloc_check_size disagrees with the header\n");
		return 1;
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* a cold cache may be empty (NULL, as in the kernel) until the
		 * refill thread has run: let it */
		for (int tries = 0; !(objs[i] = bpf_mem_alloc(&ma, sizes[i])) && tries < 100000; tries++)
			sched_yield();
		if (!objs[i]) {
			fprintf(stderr, "consumer: bpf_mem_alloc(%zu) keeps returning NULL\n", sizes[i]);
			return 1;
		}
		memset(objs[i], 0xa5, sizes[i]);
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (i % 2)
			bpf_mem_free_rcu(&ma, objs[i]);
		else
			bpf_mem_free(&ma, objs[i]);
	}
	bpfmem_rcu_barrier();
	bpf_mem_alloc_destroy(&ma);
	if (warnings) {
		fprintf(stderr, "consumer: %d warnings\n", warnings);
		return 1;
	}
	printf("consumer: %u allocations from %d-CPU libbpfmem %s: ok\n",
	       (unsigned int)(sizeof(sizes) / sizeof(sizes[0])), bpfmem_nr_cpus(), bpfmem_version());
	return 0;
}
