/* SPDX-License-Identifier: MIT */
/*
 * Lock-less singly linked lists, shaped like the kernel's <linux/llist.h>.
 * llist_add / llist_add_batch / llist_del_all may run concurrently from any
 * number of threads and signal handlers.  The __ variants are plain loads and
 * stores for a list with a single owner.
 */
#ifndef BPFMEM_KERNEL_LLIST_H
#define BPFMEM_KERNEL_LLIST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct llist_node {
	struct llist_node *next;
};

struct llist_head {
	_Atomic(struct llist_node *) first;
};

/* A list with a single owner: never touched by two threads at once. */
struct __llist_head {
	struct llist_node *first;
};

#define llist_for_each_safe(pos, n, node) \
	for ((pos) = (node); (pos) && ((n) = (pos)->next, true); (pos) = (n))

static inline bool llist_empty(const struct llist_head *head)
{
	return atomic_load_explicit(&head->first, memory_order_relaxed) == NULL;
}

/* Returns true when the list was empty before. */
static inline bool llist_add_batch(struct llist_node *new_first,
				   struct llist_node *new_last,
				   struct llist_head *head)
{
	struct llist_node *first = atomic_load_explicit(&head->first, memory_order_relaxed);

	do {
		new_last->next = first;
	} while (!atomic_compare_exchange_weak_explicit(&head->first, &first, new_first,
							memory_order_release,
							memory_order_relaxed));
	return first == NULL;
}

static inline bool llist_add(struct llist_node *new, struct llist_head *head)
{
	return llist_add_batch(new, new, head);
}

static inline struct llist_node *llist_del_all(struct llist_head *head)
{
	if (llist_empty(head))
		return NULL;
	return atomic_exchange_explicit(&head->first, NULL, memory_order_acquire);
}

static inline struct llist_node *llist_last(struct llist_node *node)
{
	while (node->next)
		node = node->next;
	return node;
}

static inline unsigned long llist_count(const struct llist_node *node)
{
	unsigned long n = 0;

	for (; node; node = node->next)
		n++;
	return n;
}

static inline struct llist_node *llist_reverse_order(struct llist_node *head)
{
	struct llist_node *new_head = NULL;

	while (head) {
		struct llist_node *tmp = head;

		head = head->next;
		tmp->next = new_head;
		new_head = tmp;
	}
	return new_head;
}

static inline void __llist_add(struct llist_node *new, struct __llist_head *head)
{
	new->next = head->first;
	head->first = new;
}

static inline struct llist_node *__llist_del_first(struct __llist_head *head)
{
	struct llist_node *first = head->first;

	if (first)
		head->first = first->next;
	return first;
}

static inline struct llist_node *__llist_del_all(struct __llist_head *head)
{
	struct llist_node *first = head->first;

	head->first = NULL;
	return first;
}

#endif /* BPFMEM_KERNEL_LLIST_H */
