// SPDX-License-Identifier: MIT
/*
 * The eBPF program of the ubpf example, built with clang -O2 -target bpf:
 * builds a list of `ctx->n` objects from bpf_obj_new, sums it while taking
 * it apart, and drops every object.  Every access to an object goes through
 * the host's bounds check.
 */
#include "bpfmem_ubpf.h"

struct ctx {
	unsigned long n;
	unsigned long seed;
};

struct node {
	struct node *next;
	unsigned long val;
	char name[40];
};

static void *(*bpf_obj_new)(unsigned long size) = (void *)BPFMEM_UBPF_OBJ_NEW;
static long (*bpf_obj_drop)(void *obj) = (void *)BPFMEM_UBPF_OBJ_DROP;

unsigned long prog(struct ctx *ctx)
{
	struct node *head = 0;
	unsigned long sum = 0;

	for (unsigned long i = 0; i < ctx->n; i++) {
		struct node *n = bpf_obj_new(sizeof(*n));

		if (!n)
			return -1;	/* an empty cache: the host counts and retries */
		n->val = ctx->seed + i;
		n->name[39] = (char)i;
		n->next = head;
		head = n;
	}
	while (head) {
		struct node *next = head->next;

		sum += head->val + head->name[39];
		bpf_obj_drop(head);
		head = next;
	}
	return sum;
}
