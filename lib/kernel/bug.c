/* SPDX-License-Identifier: MIT */
/* The warning hook: where WARN_ON_ONCE reports go, and the async-signal-safe
 * formatter that builds them. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bug.h"

/* ---- formatting ---- */

struct out {
	char *p;
	size_t left;	/* room left, the terminating NUL included */
};

static void put_char(struct out *o, char c)
{
	if (o->left > 1) {
		*o->p++ = c;
		o->left--;
	}
}

static void put_str(struct out *o, const char *s)
{
	while (*s)
		put_char(o, *s++);
}

static void put_num(struct out *o, unsigned long long v, unsigned int base, bool neg)
{
	char digits[sizeof(v) * 8];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (neg)
		put_char(o, '-');
	while (n)
		put_char(o, digits[--n]);
}

static void put_signed(struct out *o, long long v)
{
	/* negate in unsigned arithmetic: LLONG_MIN has no positive twin */
	put_num(o, v < 0 ? -(unsigned long long)v : (unsigned long long)v, 10, v < 0);
}

size_t warn_vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size };
	const char *f;

	if (!size)
		return 0;
	for (f = fmt; *f; f++) {
		char len = 0;

		if (*f != '%') {
			put_char(&o, *f);
			continue;
		}
		f++;
		if (*f == 'l' || *f == 'z')
			len = *f++;
		switch (*f) {
		case '%':
			if (len)
				goto bad;
			put_char(&o, '%');
			break;
		case 's': {
			const char *s;

			if (len)
				goto bad;
			s = va_arg(ap, const char *);
			put_str(&o, s ? s : "(null)");
			break;
		}
		case 'p': {
			void *p;

			if (len)
				goto bad;
			p = va_arg(ap, void *);
			if (!p) {
				put_str(&o, "(nil)");
			} else {
				put_str(&o, "0x");
				put_num(&o, (uintptr_t)p, 16, false);
			}
			break;
		}
		case 'd':
			if (len == 'l')
				put_signed(&o, va_arg(ap, long));
			else if (len == 'z')
				put_signed(&o, va_arg(ap, ssize_t));
			else
				put_signed(&o, va_arg(ap, int));
			break;
		case 'u':
		case 'x': {
			unsigned int base = *f == 'x' ? 16 : 10;

			if (len == 'l')
				put_num(&o, va_arg(ap, unsigned long), base, false);
			else if (len == 'z')
				put_num(&o, va_arg(ap, size_t), base, false);
			else
				put_num(&o, va_arg(ap, unsigned int), base, false);
			break;
		}
		default:
			goto bad;
		}
	}
	*o.p = '\0';
	return (size_t)(o.p - buf);
bad:
	put_str(&o, "<bad format>");
	*o.p = '\0';
	return (size_t)(o.p - buf);
}

size_t warn_format(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = warn_vformat(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

/* ---- the hook ---- */

struct warn_hook {
	void (*fn)(const char *msg, void *arg);
	void *arg;
};

/*
 * Readers (any context, signal handlers included) copy fn and arg out of
 * the published record between an increment and a decrement of `readers`,
 * and call the hook after the decrement.  A writer (process context,
 * serialised by set_lock) rewrites only the record that is not published,
 * and only once `readers` was seen at zero after the previous publish: a
 * reader that loaded that record before then has finished copying it.  Nobody
 * waits inside a reader, so a handler that interrupts a writer's wait, or a
 * hook that installs another hook, cannot deadlock.  seq_cst on `readers`
 * and `hook`: a reader's increment and a writer's publish must be ordered
 * against the other side's load (store-load).
 */
static struct warn_hook default_hook;	/* fn == NULL: one line on stderr */
static struct warn_hook user_hooks[2];
static _Atomic(struct warn_hook *) hook = &default_hook;
static _Atomic int readers;
static pthread_mutex_t set_lock = PTHREAD_MUTEX_INITIALIZER;

static struct warn_hook read_hook(void)
{
	struct warn_hook h;

	atomic_fetch_add(&readers, 1);
	h = *atomic_load(&hook);
	atomic_fetch_sub_explicit(&readers, 1, memory_order_release);
	return h;
}

void bpfmem_warn(const char *fmt, ...)
{
	static const char prefix[] = "libbpfmem: ";
	char line[sizeof(prefix) - 1 + 256 + 1];
	char *msg = line + sizeof(prefix) - 1;
	struct warn_hook h = read_hook();
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = warn_vformat(msg, 256, fmt, ap);
	va_end(ap);

	if (h.fn) {
		h.fn(msg, h.arg);
		return;
	}
	/* default: one line on stderr, a single write so lines never interleave */
	for (size_t i = 0; i < sizeof(prefix) - 1; i++)
		line[i] = prefix[i];
	msg[n] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, sizeof(prefix) - 1 + n + 1);
	(void)ignored;
}

/* fork: no writer may be halfway, and a reader that vanished with its
 * thread must not hold the child's writers forever. */
void warn_before_fork(void)
{
	pthread_mutex_lock(&set_lock);
}

void warn_after_fork_parent(void)
{
	pthread_mutex_unlock(&set_lock);
}

void warn_after_fork_child(void)
{
	atomic_store(&readers, 0);
	pthread_mutex_unlock(&set_lock);
}

__public void bpfmem_set_warn_handler(void (*fn)(const char *msg, void *arg), void *arg)
{
	struct warn_hook *h = &default_hook;

	pthread_mutex_lock(&set_lock);
	if (fn) {
		struct warn_hook *cur = atomic_load(&hook);

		h = cur == &user_hooks[0] ? &user_hooks[1] : &user_hooks[0];
		/* readers of `h` from before it was last unpublished */
		while (atomic_load(&readers))
			sched_yield();
		h->fn = fn;
		h->arg = arg;
	}
	atomic_store(&hook, h);
	pthread_mutex_unlock(&set_lock);
}
