/* SPDX-License-Identifier: MIT */
/*
 * Clocks and the child's output: timestamps for loops, a cycle counter for
 * per-call latencies, and emit_*() that write whole lines with write(2).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bench.h"

long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
uint64_t cycles(void)
{
	/* lfence keeps rdtsc from running ahead of the measured call */
	_mm_lfence();
	uint64_t t = __rdtsc();
	_mm_lfence();
	return t;
}
#else
uint64_t cycles(void)
{
	return now_ns();
}
#endif

double cycles_per_ns(void)
{
	static double cpn;

	if (!cpn) {
		uint64_t t0 = now_ns(), c0 = cycles(), t1, c1;

		do {
			t1 = now_ns();
		} while (t1 - t0 < 20000000u);
		c1 = cycles();
		cpn = (double)(c1 - c0) / (double)(t1 - t0);
	}
	return cpn;
}

static void write_line(const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(STDOUT_FILENO, buf, len);

		if (w <= 0)
			return;
		buf += w;
		len -= (size_t)w;
	}
}

void emit_metric(const char *name, const char *unit, bool lower_better, double v)
{
	char buf[256];
	int len = snprintf(buf, sizeof(buf), "M %s %s %c %.6g\n", name, unit,
			   lower_better ? 'L' : 'H', v);

	write_line(buf, (size_t)len);
}

void emit_note(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int len;

	buf[0] = 'N';
	buf[1] = ' ';
	va_start(ap, fmt);
	len = vsnprintf(buf + 2, sizeof(buf) - 3, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	len = len + 2 > (int)sizeof(buf) - 2 ? (int)sizeof(buf) - 2 : len + 2;
	for (int i = 2; i < len; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	buf[len++] = '\n';
	write_line(buf, (size_t)len);
}

int pin_thread_cpu(int vcpu)
{
	return bpfmem_thread_attach(vcpu, BPFMEM_ATTACH_PIN);
}
