/* SPDX-License-Identifier: MIT */
/*
 * Virtual CPUs: slot ownership, explicit attach with optional pinning,
 * implicit attach on first use, release at thread exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bug.h"
#include "cpu.h"
#include "init.h"
#include "rcu.h"

int nr_cpu_ids;
/* cpu_off_of(CPU_STATE_NONE): the TLS image needs a constant */
__public __tls_ie long bpfmem_this_cpu_off = -BPFMEM_FAST_CPU_STRIDE;

/*
 * A thread's identity for slot ownership: the address of one of its TLS
 * words, unique among live threads.
 */
static __tls_ie char thread_token;

struct cpu_slot {
	/* 0: free.  Claimed by CAS from 0 (acquire: the new owner sees every
	 * write the previous owner made to this CPU's caches), released by a
	 * store of 0 (release).  Only the owner releases, or whoever reaps a
	 * dead unarmed owner (below). */
	_Atomic uintptr_t owner;
	/*
	 * The kernel thread id of an owner whose exit destructor is not armed
	 * (it attached where arming could allocate, see arm_exit_destructor),
	 * else 0.  Stored by the owner after its claim and cleared before any
	 * release, so a nonzero value names the current owner; whoever clears
	 * it by CAS from the id of a thread that no longer exists frees the
	 * slot (slot_reap).
	 */
	_Atomic pid_t unarmed_tid;
} ____cacheline_aligned;

static struct cpu_slot *slots;		/* nr_cpu_ids entries, mmap'ed once */
static _Atomic unsigned int attach_hint;	/* where implicit attach starts looking */
static _Atomic int free_slots;		/* slots with owner == 0 (approximate) */
static pthread_key_t exit_key;
/* pthread_setspecific(exit_key) never allocates: set once at init */
static bool exit_key_signal_safe;
/* this thread's exit destructor is armed: it runs at thread exit */
static __tls_ie bool exit_armed;

static uintptr_t me(void)
{
	return (uintptr_t)&thread_token;
}

static bool slot_claim(int cpu)
{
	uintptr_t expected = 0;

	if (!atomic_compare_exchange_strong_explicit(&slots[cpu].owner, &expected, me(),
						     memory_order_acquire, memory_order_relaxed))
		return false;
	atomic_fetch_sub_explicit(&free_slots, 1, memory_order_relaxed);
	return true;
}

static void slot_release(int cpu)
{
	atomic_store_explicit(&slots[cpu].unarmed_tid, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&free_slots, 1, memory_order_relaxed);
	atomic_store_explicit(&slots[cpu].owner, 0, memory_order_release);
}

/*
 * glibc keeps the values of keys below PTHREAD_KEY_2NDLEVEL_SIZE (32, an
 * internal constant) in the thread descriptor: setting one is two stores.
 * A higher key's first set in a thread callocs a second-level block, which
 * a signal handler must not do.  Other C libraries: assume the worst.
 */
static bool key_set_never_allocates(pthread_key_t key)
{
#ifdef __GLIBC__
	return key < 32;
#else
	(void)key;
	return false;
#endif
}

/*
 * Arms the exit destructor that releases the slot.  With a key whose set
 * may allocate, and not known to run in process context, it leaves the
 * destructor unarmed and records the thread id in the slot instead: the
 * slot is then freed by the next attach that looks at it once the thread
 * is gone (slot_reap), and arming happens at the thread's next attach in
 * process context.
 */
static void arm_exit_destructor(int cpu, bool process_context)
{
	if (exit_armed)
		return;
	if (exit_key_signal_safe || process_context) {
		pthread_setspecific(exit_key, (void *)1);
		exit_armed = true;
		atomic_store_explicit(&slots[cpu].unarmed_tid, 0, memory_order_relaxed);
		return;
	}
	atomic_store_explicit(&slots[cpu].unarmed_tid, gettid(), memory_order_relaxed);
}

/* AS.  Frees `cpu` if its owner's destructor was not armed and the owner
 * no longer exists.  True if the slot was freed. */
static bool slot_reap(int cpu)
{
	pid_t tid = atomic_load_explicit(&slots[cpu].unarmed_tid, memory_order_relaxed);
	int saved_errno = errno;
	bool gone;

	if (!tid)
		return false;
	/* signal 0: only asks whether the thread exists in this process
	 * (a reused id only delays the reaping) */
	gone = syscall(SYS_tgkill, getpid(), tid, 0) < 0 && errno == ESRCH;
	errno = saved_errno;
	if (!gone || !atomic_compare_exchange_strong_explicit(&slots[cpu].unarmed_tid, &tid, 0,
							      memory_order_acquire,
							      memory_order_relaxed))
		return false;
	slot_release(cpu);
	return true;
}

/*
 * bpfmem_this_cpu_off changes with single instructions (xchg, cmpxchg) where a
 * signal handler on this thread could attach between a read and a write:
 * a handler runs between instructions, never inside one.
 */
static int xchg_this_cpu(int cpu)
{
	return cpu_of_off(__atomic_exchange_n(&bpfmem_this_cpu_off, cpu_off_of(cpu),
					      __ATOMIC_RELAXED));
}

static bool cmpxchg_this_cpu(int old, int new)
{
	long old_off = cpu_off_of(old);

	return __atomic_compare_exchange_n(&bpfmem_this_cpu_off, &old_off, cpu_off_of(new), false,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

int cpu_attach_any(void)
{
	int cpu = this_cpu_state();

	/* a handler may have attached since the caller looked */
	if (cpu >= 0)
		return cpu;
	if (cpu == CPU_STATE_EXITING)
		return SHARED_CPU;
	if (cpu == CPU_STATE_SHARED && atomic_load_explicit(&free_slots, memory_order_relaxed) <= 0)
		return SHARED_CPU;

	unsigned int start = atomic_fetch_add_explicit(&attach_hint, 1, memory_order_relaxed);

	for (int i = 0; i < nr_cpu_ids; i++) {
		int c = (start + i) % nr_cpu_ids;

		if (atomic_load_explicit(&slots[c].owner, memory_order_relaxed) && !slot_reap(c))
			continue;
		if (!slot_claim(c))
			continue;
		/*
		 * A handler that interrupted us after the claim may have
		 * attached on its own: keep its slot and give ours back.
		 */
		if (!cmpxchg_this_cpu(cpu, c)) {
			slot_release(c);
			cpu = this_cpu_state();
			return cpu >= 0 ? cpu : SHARED_CPU;
		}
		arm_exit_destructor(c, false);
		return c;
	}
	if (!cmpxchg_this_cpu(cpu, CPU_STATE_SHARED) && this_cpu_state() >= 0)
		return this_cpu_state();
	return SHARED_CPU;
}

bool cpu_in_use(int cpu)
{
	return atomic_load_explicit(&slots[cpu].owner, memory_order_relaxed) != 0;
}

static void thread_exit(void *unused)
{
	/* From here on a handler on this thread uses the shared CPU and never
	 * attaches again, so no slot can be left owned by a dead thread. */
	int cpu = xchg_this_cpu(CPU_STATE_EXITING);

	(void)unused;
	if (cpu >= 0)
		slot_release(cpu);
}

/* Pushed at the head, never removed: readers need only an acquire load. */
static _Atomic(struct cpu_online_notifier *) online_chain;

void register_cpu_online_notifier(struct cpu_online_notifier *nb)
{
	struct cpu_online_notifier *first = atomic_load_explicit(&online_chain,
								 memory_order_relaxed);

	do {
		nb->next = first;
	} while (!atomic_compare_exchange_weak_explicit(&online_chain, &first, nb,
							memory_order_release,
							memory_order_relaxed));
}

static void cpu_online_notify(int cpu)
{
	struct cpu_online_notifier *nb = atomic_load_explicit(&online_chain,
							      memory_order_acquire);

	for (; nb; nb = nb->next)
		nb->online(cpu);
}

static int pin_to_real_cpu(int cpu)
{
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	if (online < 1)
		online = 1;
	CPU_ZERO(&set);
	CPU_SET(cpu % online, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return -errno;
	return 0;
}

__public int bpfmem_thread_attach(int cpu, unsigned int flags)
{
	int old = this_cpu_state();
	int err = bpfmem_runtime_init();

	if (err)
		return err;
	if (cpu < 0 || cpu >= nr_cpu_ids || (flags & ~BPFMEM_ATTACH_PIN))
		return -EINVAL;
	if (old == CPU_STATE_EXITING)
		return -EINVAL;
	if (old != cpu) {
		if (!slot_claim(cpu) && !(slot_reap(cpu) && slot_claim(cpu)))
			return -EBUSY;
	}
	if (flags & BPFMEM_ATTACH_PIN) {
		err = pin_to_real_cpu(cpu);
		if (err) {
			if (old != cpu)
				slot_release(cpu);
			return err;
		}
	}
	if (old != cpu) {
		/* a handler may have attached meanwhile: release what it took too */
		old = xchg_this_cpu(cpu);
		if (old >= 0 && old != cpu)
			slot_release(old);
	}
	arm_exit_destructor(cpu, true);
	/* Explicit attach is process context: register with RCU now so that
	 * the read side works from this thread's signal handlers with every
	 * flavor, and prefill this CPU's caches. */
	rcu_thread_online();
	cpu_online_notify(cpu);
	return 0;
}

__public void bpfmem_thread_detach(void)
{
	int cpu = this_cpu_state();

	if (cpu == CPU_STATE_EXITING)
		return;
	cpu = xchg_this_cpu(CPU_STATE_NONE);
	if (cpu >= 0)
		slot_release(cpu);
}

__public int bpfmem_current_cpu(void)
{
	int cpu = this_cpu_state();

	return cpu >= 0 ? cpu : -1;
}

__public int bpfmem_nr_cpus(void)
{
	return nr_cpu_ids;
}

int cpu_init(void)
{
	long conf = sysconf(_SC_NPROCESSORS_CONF);
	const char *env = getenv("BPFMEM_NR_CPUS");
	long n = max(4 * conf, 64L);

	if (env && *env) {
		char *end;
		long v = strtol(env, &end, 10);

		if (*end == '\0' && v >= 1 && v <= 65536)
			n = v;
		else
			bpfmem_warn("ignoring BPFMEM_NR_CPUS=\"%s\": not a number in 1..65536", env);
	}
	size_t bytes = ALIGN(sizeof(struct cpu_slot) * (size_t)n, 4096);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -ENOMEM;
	if (pthread_key_create(&exit_key, thread_exit)) {
		munmap(p, bytes);
		return -EAGAIN;
	}
	exit_key_signal_safe = key_set_never_allocates(exit_key);
	slots = p;
	atomic_store(&free_slots, (int)n);
	nr_cpu_ids = (int)n;
	return 0;
}

/* Only the forking thread survives: every other slot has no owner now. */
void cpu_fork_child(void)
{
	int cpu = this_cpu_state();
	int nfree = 0;

	for (int c = 0; c < nr_cpu_ids; c++) {
		if (c == cpu) {
			/* our thread id is new in the child */
			if (atomic_load_explicit(&slots[c].unarmed_tid, memory_order_relaxed))
				atomic_store_explicit(&slots[c].unarmed_tid, gettid(),
						      memory_order_relaxed);
			continue;
		}
		atomic_store_explicit(&slots[c].unarmed_tid, 0, memory_order_relaxed);
		atomic_store_explicit(&slots[c].owner, 0, memory_order_relaxed);
		nfree++;
	}
	atomic_store(&free_slots, nfree);
}
