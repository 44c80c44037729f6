/* SPDX-License-Identifier: MIT */
/*
 * bpfmem-bench: runs every scenario against every backend, each measurement
 * in a fresh child process (LD_PRELOAD for the malloc peers), repetitions
 * interleaved across backends, and reports medians, ratios and targets.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpfmem.h>
#include "bench.h"

#define MAX_REPS 32

struct metric {
	int b, s;
	char name[64], unit[16];
	bool lower;
	int n;
	double v[MAX_REPS];
};

struct note {
	int b, s;
	char text[300];
};

static struct metric *metrics;
static int nr_metrics, cap_metrics;
static struct note *notes;
static int nr_notes, cap_notes;
static const char *skip_reason[64];
static char malloc_from[64][160];
static char machine_model[128], machine_kernel[256], load_start[64], load_end[64];
static char machine_hv[64], machine_tpc[16], machine_l1d[64], machine_l2[64];
static bool only_scen[64], only_back[64], have_only_scen, have_only_back;

/* ---- result store ---- */

static struct metric *metric_get(int b, int s, const char *name, const char *unit, bool lower)
{
	for (int i = 0; i < nr_metrics; i++)
		if (metrics[i].b == b && metrics[i].s == s && !strcmp(metrics[i].name, name))
			return &metrics[i];
	if (nr_metrics == cap_metrics) {
		cap_metrics = cap_metrics ? 2 * cap_metrics : 256;
		metrics = realloc(metrics, sizeof(*metrics) * (size_t)cap_metrics);
		if (!metrics)
			abort();
	}
	struct metric *m = &metrics[nr_metrics++];

	memset(m, 0, sizeof(*m));
	m->b = b;
	m->s = s;
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->unit, sizeof(m->unit), "%s", unit ? unit : "");
	m->lower = lower;
	return m;
}

static const struct metric *metric_find(int b, const char *name)
{
	for (int i = 0; i < nr_metrics; i++)
		if (metrics[i].b == b && !strcmp(metrics[i].name, name))
			return &metrics[i];
	return NULL;
}

static void add_note(int b, int s, const char *fmt, ...)
{
	va_list ap;

	if (nr_notes == cap_notes) {
		cap_notes = cap_notes ? 2 * cap_notes : 64;
		notes = realloc(notes, sizeof(*notes) * (size_t)cap_notes);
		if (!notes)
			abort();
	}
	notes[nr_notes].b = b;
	notes[nr_notes].s = s;
	va_start(ap, fmt);
	vsnprintf(notes[nr_notes].text, sizeof(notes[nr_notes].text), fmt, ap);
	va_end(ap);
	nr_notes++;
}

static bool has_note(int b, int s, const char *text)
{
	for (int i = 0; i < nr_notes; i++)
		if (notes[i].b == b && notes[i].s == s && !strcmp(notes[i].text, text))
			return true;
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const struct metric *m)
{
	double v[MAX_REPS];

	if (!m || !m->n)
		return -1;
	memcpy(v, m->v, sizeof(double) * (size_t)m->n);
	qsort(v, (size_t)m->n, sizeof(double), cmp_double);
	return m->n % 2 ? v[m->n / 2] : (v[m->n / 2 - 1] + v[m->n / 2]) / 2;
}

static double med(int b, const char *name)
{
	return median(metric_find(b, name));
}

static bool is_malloc_peer(int b)
{
	return backends[b].flags & BF_MALLOC;
}

/* Best peer for a metric: lowest or highest median among BK_PEER rows. */
static int best_peer(const char *name, bool malloc_only)
{
	int best = -1;
	double bv = 0;

	for (int b = 0; b < nr_backends; b++) {
		const struct metric *m = metric_find(b, name);
		double v;

		if (backends[b].kind != BK_PEER || !m || !m->n || (malloc_only && !is_malloc_peer(b)))
			continue;
		v = median(m);
		if (best < 0 || (m->lower ? v < bv : v > bv)) {
			best = b;
			bv = v;
		}
	}
	return best;
}

static int limit_row(void)
{
	for (int b = 0; b < nr_backends; b++)
		if (backends[b].kind == BK_LIMIT)
			return b;
	return -1;
}

/*
 * Row / limit for a metric: the child's paired ratio ("~<metric>.xlimit",
 * chunks of the row and of the limit run alternately in one process) when
 * there is one, else the ratio of the two medians.
 */
static double ratio_to_limit(int b, const char *name)
{
	char paired[96];
	int lim = limit_row();
	double x = med(b, name), l = lim >= 0 ? med(lim, name) : -1;

	if (b == lim)
		return x > 0 ? 1.0 : -1;
	/* in a preloaded process the limit's own memory comes from the peer,
	 * which changes its layout and speed: pair only without a preload */
	snprintf(paired, sizeof(paired), "~%s.xlimit", name);
	if (!backends[b].preload && metric_find(b, paired))
		return med(b, paired);
	return x > 0 && l > 0 ? x / l : -1;
}

/* ---- children ---- */

static const char *self_exe;
static char static_exe[4096 + 32];

static double child_timeout(const struct scenario *sc, const struct bench_opts *o)
{
	if (!strcmp(sc->name, "storm"))
		return o->storm_s + 10;
	return o->quick ? 30 : 120;
}

static void parse_line(int b, int s, char *line)
{
	char name[64], unit[16], dir;
	double v;

	if (line[0] == 'M' && sscanf(line, "M %63s %15s %c %lf", name, unit, &dir, &v) == 4) {
		struct metric *m;

		if (!isfinite(v)) {
			add_note(b, s, "%s: not a number (%g), dropped", name, v);
			return;
		}
		m = metric_get(b, s, name, unit, dir == 'L');

		if (m->n < MAX_REPS)
			m->v[m->n++] = v;
		return;
	}
	if (!strncmp(line, "N malloc-from ", 14)) {
		snprintf(malloc_from[b], sizeof(malloc_from[b]), "%s", line + 14);
		return;
	}
	if (!line[0])
		return;
	/* anything else (a note, or what a crashing allocator printed) */
	const char *text = line[0] == 'N' && line[1] == ' ' ? line + 2 : line;

	if (!has_note(b, s, text) && nr_notes < 2000)
		add_note(b, s, "%s", text);
}

/*
 * The last lines a child printed other than metrics (its notes, and what a
 * sanitizer or a crashing allocator wrote to stderr): shown when it fails, so
 * that a report is not reduced to "status 66".
 */
#define CHILD_TAIL 20

struct child_tail {
	char line[CHILD_TAIL][1024];	/* as long as run_child's line buffer */
	unsigned int n;
};

static void tail_add(struct child_tail *t, const char *line)
{
	if (line[0] && !(line[0] == 'M' && line[1] == ' '))
		snprintf(t->line[t->n++ % CHILD_TAIL], sizeof(t->line[0]), "%s", line);
}

static void tail_print(const struct child_tail *t, int s, int b, const char *why)
{
	unsigned int first = t->n > CHILD_TAIL ? t->n - CHILD_TAIL : 0;

	fprintf(stderr, "bpfmem-bench: %s/%s: %s; its last %u lines of output:\n",
		scenarios[s].name, backends[b].name, why, t->n - first);
	for (unsigned int i = first; i < t->n; i++)
		fprintf(stderr, "  | %s\n", t->line[i % CHILD_TAIL]);
}

/* Run one (scenario, backend) measurement in a child; false if it failed. */
static bool run_child(int s, int b, const struct bench_opts *o)
{
	const struct scenario *sc = &scenarios[s];
	const struct backend *be = &backends[b];
	char buf[8192], line[1024], why[96];
	static struct child_tail tail;
	size_t llen = 0;
	int fds[2], status = 0;
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(child_timeout(sc, o) * 1e9);
	bool killed = false;
	pid_t pid;

	tail.n = 0;
	if (pipe2(fds, O_CLOEXEC))
		return false;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return false;
	if (!pid) {
		char *argv[] = { (char *)"bpfmem-bench", (char *)"--child", (char *)sc->name,
				 (char *)be->name, o->quick ? (char *)"--quick" : NULL, NULL };

		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		if (be->preload)
			setenv("LD_PRELOAD", be->preload, 1);
		else
			unsetenv("LD_PRELOAD");
		execv(be->static_lib ? static_exe : self_exe, argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
		uint64_t now = now_ns();
		int r;

		if (now >= deadline) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		r = poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(fds[0], buf, sizeof(buf));

		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' || llen == sizeof(line) - 1) {
				line[llen] = 0;
				tail_add(&tail, line);
				parse_line(b, s, line);
				llen = 0;
			} else {
				line[llen++] = buf[i];
			}
		}
	}
	if (llen) {
		line[llen] = 0;
		tail_add(&tail, line);
		parse_line(b, s, line);
	}
	close(fds[0]);
	waitpid(pid, &status, 0);
	double ms = (double)(now_ns() - t0) / 1e6;

	if (killed) {
		add_note(b, s, "HANG: killed after %.0f ms without finishing", ms);
		tail_print(&tail, s, b, "killed after the time limit");
		if (!strcmp(sc->name, "storm"))
			metric_get(b, s, "storm.survived", "bool", false)->v[0] = 0,
			metric_get(b, s, "storm.survived", "bool", false)->n = 1;
		return false;
	}
	if (WIFSIGNALED(status)) {
		add_note(b, s, "CRASH: child killed by signal %d (%s) after %.0f ms",
			 WTERMSIG(status), strsignal(WTERMSIG(status)), ms);
		snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
		tail_print(&tail, s, b, why);
		if (!strcmp(sc->name, "storm")) {
			struct metric *m = metric_get(b, s, "storm.survived", "bool", false);

			m->v[0] = 0;
			m->n = 1;
			m = metric_get(b, s, "storm.ms_to_failure", "ms", false);
			m->v[0] = ms;
			m->n = 1;
		}
		return false;
	}
	if (WEXITSTATUS(status)) {
		if (WEXITSTATUS(status) != 3)
			add_note(b, s, "child exited with status %d", WEXITSTATUS(status));
		snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(status));
		tail_print(&tail, s, b, why);
		return false;
	}
	return true;
}

/* ---- the child ---- */

static int child_main(const char *sname, const char *bname, const struct bench_opts *o)
{
	const struct backend *b = backend_by_name(bname);
	const struct scenario *sc = NULL;

	for (int i = 0; i < nr_scenarios; i++)
		if (!strcmp(scenarios[i].name, sname))
			sc = &scenarios[i];
	if (!b || !sc) {
		emit_note("unknown scenario or backend: %s %s", sname, bname);
		return 2;
	}
	if (b->flags & BF_MALLOC) {
		/* the preload must have replaced malloc, or the row lies */
		void *fn = dlsym(RTLD_DEFAULT, "malloc");
		Dl_info di;

		if (!fn || !dladdr(fn, &di) || !di.dli_fname) {
			emit_note("cannot tell which library provides malloc()");
			return 2;
		}
		if (!strstr(di.dli_fname, b->malloc_from)) {
			emit_note("preload not effective: malloc() comes from %s, expected %s",
				  di.dli_fname, b->malloc_from);
			return 2;
		}
		emit_note("malloc-from %s", di.dli_fname);
	}
	return sc->run(b, o);
}

/* ---- machine description ---- */

static void read_first_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	out[0] = 0;
	if (!f)
		return;
	if (fgets(out, (int)len, f))
		out[strcspn(out, "\n")] = 0;
	fclose(f);
}

/* "Key:   value" from lscpu into out, "" when absent */
static void lscpu_field(const char *text, const char *key, char *out, size_t len)
{
	const char *p = strstr(text, key);

	out[0] = 0;
	if (!p)
		return;
	p += strlen(key);
	p += strspn(p, " \t");
	snprintf(out, len, "%.*s", (int)strcspn(p, "\n"), p);
}

static void describe_machine(void)
{
	static char text[16384];
	struct utsname u;
	FILE *f = popen("LC_ALL=C lscpu 2>/dev/null", "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;

	text[n] = 0;
	if (f)
		pclose(f);
	lscpu_field(text, "\nModel name:", machine_model, sizeof(machine_model));
	if (!machine_model[0])
		snprintf(machine_model, sizeof(machine_model), "unknown");
	lscpu_field(text, "\nHypervisor vendor:", machine_hv, sizeof(machine_hv));
	lscpu_field(text, "\nThread(s) per core:", machine_tpc, sizeof(machine_tpc));
	lscpu_field(text, "\nL1d cache:", machine_l1d, sizeof(machine_l1d));
	lscpu_field(text, "\nL2 cache:", machine_l2, sizeof(machine_l2));
	uname(&u);
	snprintf(machine_kernel, sizeof(machine_kernel), "%s %s %s", u.sysname, u.release, u.machine);
}

#if defined(__clang__)
#define COMPILER "clang " __clang_version__
#else
#define COMPILER "gcc " __VERSION__
#endif

/* ---- output: tables ---- */

static void fmt_val(char *out, size_t len, double v)
{
	if (v < 0)
		snprintf(out, len, "-");
	else if (v == 0)
		snprintf(out, len, "0");
	else if (v < 10)
		snprintf(out, len, "%.2f", v);
	else if (v < 1000)
		snprintf(out, len, "%.1f", v);
	else
		snprintf(out, len, "%.0f", v);
}

static void fmt_ratio(char *out, size_t len, double v, double ref)
{
	if (v < 0 || ref <= 0)
		snprintf(out, len, "-");
	else
		snprintf(out, len, "%.2fx", v / ref);
}

static int scenario_metrics(int s, const char **names, int max)
{
	int n = 0;

	for (int i = 0; i < nr_metrics && n < max; i++) {
		bool seen = false;

		if (metrics[i].s != s || metrics[i].name[0] == '~')
			continue;
		for (int j = 0; j < n; j++)
			seen |= !strcmp(names[j], metrics[i].name);
		if (!seen)
			names[n++] = metrics[i].name;
	}
	return n;
}

static bool row_has(int b, int s)
{
	for (int i = 0; i < nr_metrics; i++)
		if (metrics[i].b == b && metrics[i].s == s)
			return true;
	return false;
}

static bool scenario_selected(int s)
{
	return !have_only_scen || only_scen[s];
}

static bool backend_selected(int b)
{
	return !have_only_back || only_back[b];
}

static void print_scenario(FILE *out, int s, bool md)
{
	const struct scenario *sc = &scenarios[s];
	const char *names[32];
	int nm = scenario_metrics(s, names, 32);
	const char *sep = md ? " | " : "  ";
	size_t plen = strlen(sc->name) + 1;
	char v[32];

	if (md)
		fprintf(out, "\n### %s\n\n%s.\n\n", sc->name, sc->desc);
	else
		fprintf(out, "\n== %s: %s\n", sc->name, sc->desc);
	if (!nm) {
		fprintf(out, "%s(no results)\n", md ? "" : "  ");
		return;
	}
	/* values */
	fprintf(out, md ? "| %-16s" : "  %-16s", "backend");
	for (int i = 0; i < nm; i++)
		fprintf(out, "%s%10s", sep, names[i] + (strncmp(names[i], sc->name, plen - 1) ? 0 : plen));
	if (!sc->ratio_all && sc->headline)
		fprintf(out, "%s%9s%s%9s", sep, "x limit", sep, "x best");
	fprintf(out, md ? " |\n" : "\n");
	if (md) {
		fprintf(out, "|---");
		for (int i = 0; i < nm + (!sc->ratio_all && sc->headline ? 2 : 0); i++)
			fprintf(out, "|---:");
		fprintf(out, "|\n");
	}
	for (int b = 0; b < nr_backends; b++) {
		if (!backend_selected(b) || !scenarios[s].applies(&backends[b]))
			continue;
		fprintf(out, md ? "| %-16s" : "  %-16s", backends[b].name);
		if (!row_has(b, s)) {
			fprintf(out, "%s%s%s\n", sep, skip_reason[b] ? skip_reason[b] : "no result",
				md ? " |" : "");
			continue;
		}
		for (int i = 0; i < nm; i++) {
			const struct metric *m = metric_find(b, names[i]);

			fmt_val(v, sizeof(v), median(m));
			if (m && m->n && !strcmp(m->unit, "bool"))
				snprintf(v, sizeof(v), "%s", median(m) == 1 ? "yes" : "NO");
			fprintf(out, "%s%10s", sep, v);
		}
		if (!sc->ratio_all && sc->headline) {
			int bp = best_peer(sc->headline, false);
			double x = med(b, sc->headline);

			fmt_ratio(v, sizeof(v), ratio_to_limit(b, sc->headline), 1.0);
			fprintf(out, "%s%9s", sep, v);
			fmt_ratio(v, sizeof(v), x, bp >= 0 ? med(bp, sc->headline) : -1);
			fprintf(out, "%s%9s", sep, v);
		}
		fprintf(out, md ? " |\n" : "\n");
	}
	if (sc->headline && !sc->ratio_all) {
		int bp = best_peer(sc->headline, false);

		fprintf(out, "%sratios of %s: row / limit, row / best peer (%s)%s\n", md ? "\n" : "  ",
			sc->headline, bp >= 0 ? backends[bp].name : "none", md ? "" : "");
	}
	if (sc->ratio_all) {
		/* every metric: ratio to the limit and to the best peer at that metric */
		fprintf(out, md ? "\nRatios: row / limit (paired: the limit ran alternately in the same "
				  "process, except for the preloaded peers: ratio of medians), row / best "
				  "peer of that column (ratio of medians):\n\n| %-16s"
				: "  ratios: row / limit (paired in one process unless preloaded), "
				  "row / best peer (medians)"
				  "\n  %-16s",
			"backend");
		for (int i = 0; i < nm; i++)
			if (!strstr(names[i], "null"))
				fprintf(out, "%s%15s", sep,
					names[i] + (strncmp(names[i], sc->name, plen - 1) ? 0 : plen));
		fprintf(out, md ? " |\n" : "\n");
		if (md) {
			fprintf(out, "|---");
			for (int i = 0; i < nm; i++)
				if (!strstr(names[i], "null"))
					fprintf(out, "|---:");
			fprintf(out, "|\n");
		}
		for (int b = 0; b < nr_backends; b++) {
			if (!row_has(b, s))
				continue;
			fprintf(out, md ? "| %-16s" : "  %-16s", backends[b].name);
			for (int i = 0; i < nm; i++) {
				char r1[16], r2[16], cell[40];
				int bp;
				double x;

				if (strstr(names[i], "null"))
					continue;
				bp = best_peer(names[i], false);
				x = med(b, names[i]);
				fmt_ratio(r1, sizeof(r1), ratio_to_limit(b, names[i]), 1.0);
				fmt_ratio(r2, sizeof(r2), x, bp >= 0 ? med(bp, names[i]) : -1);
				snprintf(cell, sizeof(cell), "%s %s", r1, r2);
				fprintf(out, "%s%15s", sep, cell);
			}
			fprintf(out, md ? " |\n" : "\n");
		}
	}
	/* notes, once each */
	bool first = true;

	for (int i = 0; i < nr_notes; i++) {
		if (notes[i].s != s)
			continue;
		if (first)
			fprintf(out, md ? "\nNotes:\n\n" : "  notes:\n");
		first = false;
		fprintf(out, md ? "- %s: %s\n" : "    %s: %s\n", backends[notes[i].b].name, notes[i].text);
	}
}

/* One line per backend, one column per scenario's headline (storm: survived). */
static void print_summary(FILE *out, bool md)
{
	const char *cols[32];
	int nc = 0;

	for (int s = 0; s < nr_scenarios && nc < 32; s++)
		if (scenario_selected(s))
			cols[nc++] = scenarios[s].headline ? scenarios[s].headline :
				     !strcmp(scenarios[s].name, "storm") ? "storm.survived" : NULL;
	fprintf(out, md ? "\n## Summary (medians; details and ratios below)\n\n| %-16s"
			: "\n== summary (medians; details and ratios below)\n  %-16s", "backend");
	for (int c = 0; c < nc; c++) {
		const struct metric *m = NULL;
		char label[96];

		if (!cols[c])
			continue;
		for (int b = 0; b < nr_backends && !m; b++)
			m = metric_find(b, cols[c]);
		/* the unit, unless the name says it already (Mobj/s) */
		if (m && strcmp(m->unit, "bool") && !strstr(cols[c], m->unit))
			snprintf(label, sizeof(label), "%s (%s)", cols[c], m->unit);
		else
			snprintf(label, sizeof(label), "%s", cols[c]);
		fprintf(out, "%s%15s", md ? " | " : "  ", label);
	}
	fprintf(out, md ? " |\n|---" : "\n");
	for (int c = 0; md && c < nc; c++)
		if (cols[c])
			fprintf(out, "|---:");
	fprintf(out, md ? "|\n" : "");
	for (int b = 0; b < nr_backends; b++) {
		bool any = false;

		for (int c = 0; c < nc; c++)
			any |= cols[c] && metric_find(b, cols[c]);
		if (!any)
			continue;
		fprintf(out, md ? "| %-16s" : "  %-16s", backends[b].name);
		for (int c = 0; c < nc; c++) {
			const struct metric *m;
			char v[32];

			if (!cols[c])
				continue;
			m = metric_find(b, cols[c]);
			fmt_val(v, sizeof(v), median(m));
			if (m && m->n && !strcmp(m->unit, "bool"))
				snprintf(v, sizeof(v), "%s", median(m) == 1 ? "yes" : "NO");
			fprintf(out, "%s%15s", md ? " | " : "  ", m && m->n ? v : "-");
		}
		fprintf(out, md ? " |\n" : "\n");
	}
}

/* ---- targets of issue 3 ---- */

struct target {
	char what[120];
	int met;	/* 1 met, 0 missed, -1 not measured */
	char detail[400];
};

static struct target targets[32];
static int nr_targets;

static struct target *target_add(const char *what)
{
	struct target *t = &targets[nr_targets++];

	snprintf(t->what, sizeof(t->what), "%s", what);
	t->met = -1;
	snprintf(t->detail, sizeof(t->detail), "not measured in this run");
	return t;
}

static const size_t sweep_sizes[] = { 16, 64, 96, 192, 512, 4096 };

static void pair_vs_limit(const char *row, double bound)
{
	char what[120], name[32];
	int b = backend_by_name(row) - backends, lim = limit_row();
	double worst = 0;
	size_t worst_size = 0;
	int n = 0;

	snprintf(what, sizeof(what), "%s pair <= %.1fx the %slimit at every size%s", row, bound,
		 backend_by_name(row)->loops_only ? "inlined " : "",
		 backend_by_name(row)->static_lib ? " (libbpfmem.a; for reference)" : "");
	struct target *t = target_add(what);

	for (size_t i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "pair.%zu", sweep_sizes[i]);
		double r = ratio_to_limit(b, name);

		if (r <= 0)
			continue;
		n++;
		if (r > worst) {
			worst = r;
			worst_size = sweep_sizes[i];
		}
	}
	if (!n)
		return;
	t->met = worst <= bound;
	snprintf(name, sizeof(name), "pair.%zu", worst_size);
	if (backend_by_name(row)->loops_only)
		lim = backend_by_name("limit-inl") - backends;
	snprintf(t->detail, sizeof(t->detail),
		 "worst %.2fx (paired) at %zu B; medians %.2f vs %s %.2f ns", worst, worst_size,
		 med(b, name), backends[lim].name, med(lim, name));
}

static void pair_vs_malloc(const char *row)
{
	char what[120], name[32];
	int b = backend_by_name(row) - backends;
	double worst = 1e9;
	size_t worst_size = 0;
	int n = 0, worst_peer = -1;

	snprintf(what, sizeof(what), "%s pair faster than every malloc peer at every size", row);
	struct target *t = target_add(what);

	for (size_t i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "pair.%zu", sweep_sizes[i]);
		int bp = best_peer(name, true);
		double x = med(b, name);

		if (x <= 0 || bp < 0)
			continue;
		n++;
		if (med(bp, name) / x < worst) {
			worst = med(bp, name) / x;
			worst_size = sweep_sizes[i];
			worst_peer = bp;
		}
	}
	if (!n)
		return;
	t->met = worst > 1.0;
	snprintf(name, sizeof(name), "pair.%zu", worst_size);
	snprintf(t->detail, sizeof(t->detail),
		 "worst size %zu B: %s %.2f ns vs %s %.2f ns (peer time / bpfmem time = %.2f)",
		 worst_size, row, med(b, name), backends[worst_peer].name, med(worst_peer, name),
		 worst);
}

/*
 * Both libbpfmem rows against the best peer on `metric` (malloc peers only
 * for a time, `lower` better): within `bound` times the peer (a time) or
 * at least 1/`bound` of it (a rate), with NULL rates below 0.1 %.
 */
static void peer_ratio_target(const char *what, int cache, int any, const char *metric,
			      const char *nulls, bool lower, double bound)
{
	struct target *t = target_add(what);
	int bp = best_peer(metric, lower);
	double p, c = med(cache, metric), a = med(any, metric);
	double cn = med(cache, nulls), an = med(any, nulls);

	if (bp < 0 || c <= 0 || a <= 0)
		return;
	p = med(bp, metric);
	t->met = (lower ? c <= bound * p && a <= bound * p : c * bound >= p && a * bound >= p) &&
		 cn < 0.1 && an < 0.1;
	snprintf(t->detail, sizeof(t->detail),
		 "bpfmem-cache %.2f (%.2fx), bpfmem-any %.2f (%.2fx), %s %.2f; NULL %.2f%% / %.2f%%",
		 c, c / p, a, a / p, backends[bp].name, p, cn, an);
}

/* Issue 7 (refill without the thread round trip): NULL rates below 0.1 %. */
static void evaluate_issue7_targets(int cache, int any, int naive)
{
	struct target *t;
	int bp;

	peer_ratio_target("issue 7: batch128 64 B <= 1.5x the best malloc peer, NULL < 0.1%",
			  cache, any, "batch128.64", "batch128.null%", true, 1.5);
	peer_ratio_target("issue 7: xthread at or above the best peer, NULL < 0.1%",
			  cache, any, "xthread.Mobj/s", "xthread.null%", false, 1.0);

	t = target_add("issue 7: free_rcu >= 3x naive call_rcu, peak RSS no higher");
	if (med(naive, "free_rcu.Mobj/s") > 0 && med(cache, "free_rcu.Mobj/s") > 0 &&
	    med(any, "free_rcu.Mobj/s") > 0) {
		double n = med(naive, "free_rcu.Mobj/s"), c = med(cache, "free_rcu.Mobj/s"),
		       a = med(any, "free_rcu.Mobj/s");
		double nr = med(naive, "free_rcu.peak_rss_MiB"),
		       cr = med(cache, "free_rcu.peak_rss_MiB"), ar = med(any, "free_rcu.peak_rss_MiB");

		t->met = c >= 3 * n && a >= 3 * n && cr <= nr && ar <= nr;
		snprintf(t->detail, sizeof(t->detail),
			 "bpfmem-cache %.1fx, bpfmem-any %.1fx of %.2f Mobj/s; peak RSS %.0f / %.0f "
			 "vs %.0f MiB", c / n, a / n, n, cr, ar, nr);
	}

	for (int i = 0; i < 2; i++) {
		const char *sc = i ? "tail_all" : "tail";
		char what[120], p99[32], nul[32];

		snprintf(what, sizeof(what),
			 "issue 7: %s p99.99 of bpfmem-any at or below the best peer, NULL < 0.1%%", sc);
		snprintf(p99, sizeof(p99), "%s.p99.99", sc);
		snprintf(nul, sizeof(nul), "%s.null%%", sc);
		t = target_add(what);
		bp = best_peer(p99, false);
		if (bp >= 0 && med(any, p99) > 0) {
			double p = med(bp, p99), a = med(any, p99), an = med(any, nul);

			t->met = a <= p && an < 0.1;
			snprintf(t->detail, sizeof(t->detail),
				 "bpfmem-any %.0f ns (NULL %.2f%%), best peer %s %.0f ns", a, an,
				 backends[bp].name, p);
		}
	}

	t = target_add("issue 7: storm, the churning thread's NULL rate < 0.1%");
	if (med(cache, "storm.main_null%") >= 0 && med(any, "storm.main_null%") >= 0) {
		double c = med(cache, "storm.main_null%"), a = med(any, "storm.main_null%");

		t->met = c < 0.1 && a < 0.1;
		snprintf(t->detail, sizeof(t->detail),
			 "bpfmem-cache %.3f%%, bpfmem-any %.3f%% (handler: %.3f%% / %.3f%%)", c, a,
			 med(cache, "storm.handler_null%"), med(any, "storm.handler_null%"));
	}
}

static void evaluate_targets(void)
{
	struct target *t;
	int cache = backend_by_name("bpfmem-cache") - backends;
	int any = backend_by_name("bpfmem-any") - backends;
	int absl = backend_by_name("absl-lla") - backends;
	int naive = backend_by_name("urcu-naive") - backends;

	nr_targets = 0;
	pair_vs_limit("bpfmem-cache", 1.5);
	pair_vs_limit("bpfmem-any", 2.0);
	/* not targets of the issue: how far the static library is from them */
	pair_vs_limit("bpfmem-cache-st", 1.5);
	pair_vs_limit("bpfmem-any-st", 2.0);
	pair_vs_malloc("bpfmem-cache");
	pair_vs_malloc("bpfmem-any");
	/* the same through BPFMEM_INLINE, against the inlined limit */
	pair_vs_limit("bpfmem-cache-inl", 1.5);
	pair_vs_limit("bpfmem-any-inl", 2.0);
	pair_vs_malloc("bpfmem-cache-inl");
	pair_vs_malloc("bpfmem-any-inl");

	t = target_add("tail p99.99 alloc latency at or below the best peer");
	{
		int bp = best_peer("tail.p99.99", false);
		double c = med(cache, "tail.p99.99"), a = med(any, "tail.p99.99");

		if (bp >= 0 && (c > 0 || a > 0)) {
			double p = med(bp, "tail.p99.99");

			t->met = (c < 0 || c <= p) && (a < 0 || a <= p);
			snprintf(t->detail, sizeof(t->detail),
				 "bpfmem-cache %.0f ns, bpfmem-any %.0f ns, best peer %s %.0f ns", c, a,
				 backends[bp].name, p);
		}
	}

	t = target_add("alloc+free in a signal handler >= 100x faster than abseil's arena");
	{
		double ab = med(absl, "signal.pair"), c = med(cache, "signal.pair"),
		       a = med(any, "signal.pair");

		if (ab > 0 && c > 0 && a > 0) {
			t->met = ab / c >= 100 && ab / a >= 100;
			snprintf(t->detail, sizeof(t->detail),
				 "abseil %.0f ns; bpfmem-cache %.1f ns (%.0fx), bpfmem-any %.1f ns (%.0fx)",
				 ab, c, ab / c, a, a > 0 ? ab / a : 0);
		}
	}

	t = target_add("20 kHz signal storm survived: no deadlock, no double hand-out");
	{
		double c = med(cache, "storm.survived"), a = med(any, "storm.survived");

		if (c >= 0 && a >= 0) {
			t->met = c == 1 && a == 1;
			snprintf(t->detail, sizeof(t->detail),
				 "bpfmem-cache %s, bpfmem-any %s; %.0f / %.0f signals/s handled over "
				 "%.1f s; double hand-outs %.0f / %.0f",
				 c == 1 ? "survived" : "FAILED", a == 1 ? "survived" : "FAILED",
				 med(cache, "storm.signals/s"), med(any, "storm.signals/s"),
				 med(cache, "storm.seconds"), med(cache, "storm.double_handouts"),
				 med(any, "storm.double_handouts"));
		}
	}

	t = target_add("free_rcu throughput >= 5x naive call_rcu, peak RSS no higher");
	{
		double n = med(naive, "free_rcu.Mobj/s"), c = med(cache, "free_rcu.Mobj/s"),
		       a = med(any, "free_rcu.Mobj/s");
		double nr = med(naive, "free_rcu.peak_rss_MiB"), cr = med(cache, "free_rcu.peak_rss_MiB"),
		       ar = med(any, "free_rcu.peak_rss_MiB");

		if (n > 0 && c > 0 && a > 0) {
			t->met = c / n >= 5 && a / n >= 5 && cr <= nr && ar <= nr;
			snprintf(t->detail, sizeof(t->detail),
				 "bpfmem-cache %.1f Mobj/s (%.1fx), bpfmem-any %.1f Mobj/s (%.1fx), "
				 "naive %.2f Mobj/s; peak RSS %.0f / %.0f vs %.0f MiB",
				 c, c / n, a, a / n, n, cr, ar, nr);
		}
	}

	t = target_add("xthread at or above the best peer, NULL rate < 1%");
	{
		int bp = best_peer("xthread.Mobj/s", false);
		double c = med(cache, "xthread.Mobj/s"), a = med(any, "xthread.Mobj/s");
		double cn = med(cache, "xthread.null%"), an = med(any, "xthread.null%");

		if (bp >= 0 && c > 0 && a > 0) {
			double p = med(bp, "xthread.Mobj/s");

			t->met = c >= p && a >= p && cn < 1 && an < 1;
			snprintf(t->detail, sizeof(t->detail),
				 "bpfmem-cache %.2f Mobj/s (NULL %.2f%%), bpfmem-any %.2f Mobj/s "
				 "(NULL %.2f%%), best peer %s %.2f Mobj/s",
				 c, cn, a, an, backends[bp].name, p);
		}
	}
	evaluate_issue7_targets(cache, any, naive);
}

static void print_targets(FILE *out, bool md)
{
	fprintf(out, md ? "\n## Targets, this run (issue 3 unless named)\n\n"
			  "| target | result | numbers |\n|---|---|---|\n"
			: "\n== targets, this run (issue 3 unless named)\n");
	for (int i = 0; i < nr_targets; i++) {
		const char *r = targets[i].met < 0 ? "n/a" : targets[i].met ? "MET" : "MISSED";

		if (md)
			fprintf(out, "| %s | %s | %s |\n", targets[i].what, r, targets[i].detail);
		else
			fprintf(out, "  %-7s %s\n          %s\n", r, targets[i].what, targets[i].detail);
	}
}

static void print_header(FILE *out, const struct bench_opts *o, bool md, double secs)
{
	if (md) {
		fprintf(out, "| | |\n|---|---|\n| CPU | %s, %ld online CPUs, %s thread(s) per core; "
			"L1d %s, L2 %s; hypervisor: %s |\n| kernel | %s |\n"
			"| compiler | %s |\n| glibc | %s |\n| mode | %s, median of %d repetitions, "
			"interleaved across backends; %.0f s total |\n| load average | %s (start), %s (end) |\n",
			machine_model, sysconf(_SC_NPROCESSORS_ONLN), machine_tpc, machine_l1d,
			machine_l2, machine_hv[0] ? machine_hv : "none", machine_kernel, COMPILER,
			gnu_get_libc_version(), o->quick ? "--quick" : "full", o->reps, secs, load_start,
			load_end);
		fprintf(out, "\nBackends:\n\n");
		for (int b = 0; b < nr_backends; b++)
			fprintf(out, "- `%s`: %s%s%s%s\n", backends[b].name, backends[b].desc,
				malloc_from[b][0] ? " (malloc from " : "", malloc_from[b],
				malloc_from[b][0] ? ")" : "");
		return;
	}
	fprintf(out, "bpfmem-bench: %s mode, median of %d repetitions (interleaved), %.0f s\n",
		o->quick ? "quick" : "full", o->reps, secs);
	fprintf(out, "machine: %s, %ld CPUs (%s per core, hypervisor %s), %s, %s, glibc %s\n"
		"load average: %s -> %s\n", machine_model, sysconf(_SC_NPROCESSORS_ONLN),
		machine_tpc, machine_hv[0] ? machine_hv : "none", machine_kernel, COMPILER,
		gnu_get_libc_version(), load_start, load_end);
}

/* ---- output: JSON ---- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static int write_json(const char *path, const struct bench_opts *o, double secs)
{
	FILE *f = fopen(path, "w");
	time_t now = time(NULL);
	char date[64];

	if (!f) {
		fprintf(stderr, "bpfmem-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	fprintf(f, "{\n  \"tool\": \"bpfmem-bench\",\n  \"date\": \"%s\",\n  \"mode\": \"%s\",\n"
		"  \"repetitions\": %d,\n  \"seconds\": %.1f,\n", date, o->quick ? "quick" : "full",
		o->reps, secs);
	fprintf(f, "  \"machine\": {\"cpu_model\": ");
	json_str(f, machine_model);
	fprintf(f, ", \"online_cpus\": %ld, \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
	json_str(f, machine_kernel);
	fprintf(f, ", \"compiler\": ");
	json_str(f, COMPILER);
	fprintf(f, ", \"glibc\": ");
	json_str(f, gnu_get_libc_version());
	fprintf(f, ", \"threads_per_core\": ");
	json_str(f, machine_tpc);
	fprintf(f, ", \"l1d\": ");
	json_str(f, machine_l1d);
	fprintf(f, ", \"l2\": ");
	json_str(f, machine_l2);
	fprintf(f, ", \"hypervisor\": ");
	json_str(f, machine_hv);
	fprintf(f, ", \"bpfmem_nr_cpus\": %d, \"loadavg_start\": ", bpfmem_nr_cpus());
	json_str(f, load_start);
	fprintf(f, ", \"loadavg_end\": ");
	json_str(f, load_end);
	fprintf(f, "},\n  \"backends\": [\n");
	for (int b = 0; b < nr_backends; b++) {
		fprintf(f, "    {\"name\": \"%s\", \"kind\": \"%s\", \"desc\": ", backends[b].name,
			backends[b].kind == BK_LIMIT ? "limit" :
			backends[b].kind == BK_BPFMEM ? "bpfmem" : "peer");
		json_str(f, backends[b].desc);
		fprintf(f, ", \"skipped\": ");
		if (skip_reason[b])
			json_str(f, skip_reason[b]);
		else
			fprintf(f, "null");
		fprintf(f, ", \"malloc_from\": ");
		json_str(f, malloc_from[b]);
		fprintf(f, "}%s\n", b + 1 < nr_backends ? "," : "");
	}
	fprintf(f, "  ],\n  \"scenarios\": [\n");
	for (int s = 0; s < nr_scenarios; s++) {
		fprintf(f, "    {\"name\": \"%s\", \"headline\": ", scenarios[s].name);
		if (scenarios[s].headline)
			json_str(f, scenarios[s].headline);
		else
			fprintf(f, "null");
		fprintf(f, ", \"desc\": ");
		json_str(f, scenarios[s].desc);
		fprintf(f, "}%s\n", s + 1 < nr_scenarios ? "," : "");
	}
	fprintf(f, "  ],\n  \"results\": [\n");
	for (int i = 0; i < nr_metrics; i++) {
		const struct metric *m = &metrics[i];

		fprintf(f, "    {\"scenario\": \"%s\", \"backend\": \"%s\", \"metric\": ",
			scenarios[m->s].name, backends[m->b].name);
		json_str(f, m->name[0] == '~' ? m->name + 1 : m->name);
		fprintf(f, ", \"unit\": ");
		json_str(f, m->unit);
		fprintf(f, ", \"better\": \"%s\", \"median\": %.6g, \"values\": [",
			m->lower ? "lower" : "higher", median(m));
		for (int j = 0; j < m->n; j++)
			fprintf(f, "%s%.6g", j ? ", " : "", m->v[j]);
		fprintf(f, "]}%s\n", i + 1 < nr_metrics ? "," : "");
	}
	fprintf(f, "  ],\n  \"notes\": [\n");
	for (int i = 0; i < nr_notes; i++) {
		fprintf(f, "    {\"scenario\": \"%s\", \"backend\": \"%s\", \"text\": ",
			notes[i].s >= 0 ? scenarios[notes[i].s].name : "", backends[notes[i].b].name);
		json_str(f, notes[i].text);
		fprintf(f, "}%s\n", i + 1 < nr_notes ? "," : "");
	}
	fprintf(f, "  ],\n  \"targets\": [\n");
	for (int i = 0; i < nr_targets; i++) {
		fprintf(f, "    {\"target\": ");
		json_str(f, targets[i].what);
		fprintf(f, ", \"met\": %s, \"detail\": ",
			targets[i].met < 0 ? "null" : targets[i].met ? "true" : "false");
		json_str(f, targets[i].detail);
		fprintf(f, "}%s\n", i + 1 < nr_targets ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	return fclose(f);
}

/* ---- output: gnuplot charts ---- */

static int write_plots(const char *dir)
{
	char path[4096], script[4096 + 64];
	FILE *f;
	int cols = 0, col_b[64];

	mkdir(dir, 0755);
	/* size sweep: pair and batch128 */
	for (int b = 0; b < nr_backends; b++)
		if (metric_find(b, "pair.64"))
			col_b[cols++] = b;
	static const char *sweeps[] = { "pair", "batch128" };

	for (int k = 0; k < 2; k++) {
		snprintf(path, sizeof(path), "%s/%s-sweep.dat", dir, sweeps[k]);
		f = fopen(path, "w");
		if (!f)
			return -1;
		fprintf(f, "# size");
		for (int c = 0; c < cols; c++)
			fprintf(f, " %s", backends[col_b[c]].name);
		fprintf(f, "\n");
		for (size_t i = 0; i < 6; i++) {
			char name[32];

			snprintf(name, sizeof(name), "%s.%zu", sweeps[k], sweep_sizes[i]);
			fprintf(f, "%zu", sweep_sizes[i]);
			for (int c = 0; c < cols; c++) {
				double v = med(col_b[c], name);

				if (v > 0)
					fprintf(f, " %.4g", v);
				else
					fprintf(f, " NaN");
			}
			fprintf(f, "\n");
		}
		fclose(f);
	}
	/* latency distribution: quantile -> ns */
	static const double qs[] = { 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999,
				     0.99995, 0.99999 };
	int lcols = 0, lcol_b[64];

	for (int b = 0; b < nr_backends; b++)
		if (metric_find(b, "~tail.q0.5"))
			lcol_b[lcols++] = b;
	snprintf(path, sizeof(path), "%s/latency.dat", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "# nines quantile");
	for (int c = 0; c < lcols; c++)
		fprintf(f, " %s", backends[lcol_b[c]].name);
	fprintf(f, "\n");
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		char name[32];

		snprintf(name, sizeof(name), "~tail.q%g", qs[i]);
		fprintf(f, "%.4f %g", -log10(1 - qs[i]), qs[i]);
		for (int c = 0; c < lcols; c++)
			fprintf(f, " %.4g", med(lcol_b[c], name));
		fprintf(f, "\n");
	}
	fclose(f);

	snprintf(path, sizeof(path), "%s/charts.gp", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "set terminal pngcairo size 900,560 noenhanced\nset key outside right\n"
		"set grid\nset logscale x 2\nset logscale y\nset xlabel 'object size (bytes)'\n");
	for (int k = 0; k < 2; k++) {
		fprintf(f, "set output '%s/%s-sweep.png'\nset title '%s: ns per alloc+free "
			"(median), lower is better'\nset ylabel 'ns'\nplot ", dir, sweeps[k], sweeps[k]);
		for (int c = 0; c < cols; c++)
			fprintf(f, "%s'%s/%s-sweep.dat' using 1:%d with linespoints title '%s'",
				c ? ", " : "", dir, sweeps[k], c + 2, backends[col_b[c]].name);
		fprintf(f, "\n");
	}
	fprintf(f, "unset logscale x\nset xlabel 'quantile'\nset ylabel 'ns per allocation'\n"
		"set xtics ('p50' 0.301, 'p90' 1, 'p99' 2, 'p99.9' 3, 'p99.99' 4, 'p99.999' 5)\n"
		"set output '%s/latency.png'\nset title 'tail: allocation latency distribution "
		"(10,000 live objects, random sizes)'\nplot ", dir);
	for (int c = 0; c < lcols; c++)
		fprintf(f, "%s'%s/latency.dat' using 1:%d with linespoints title '%s'", c ? ", " : "",
			dir, c + 3, backends[lcol_b[c]].name);
	fprintf(f, "\n");
	fclose(f);
	snprintf(script, sizeof(script), "gnuplot '%s/charts.gp'", dir);
	if (system(script)) {
		fprintf(stderr, "bpfmem-bench: gnuplot failed (package gnuplot-nox); data is in %s\n",
			dir);
		return -1;
	}
	return 0;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: bpfmem-bench [--quick] [--reps N] [--json FILE] [--plot DIR] [--check]\n"
		   "                    [--only SCENARIO,...] [--backends NAME,...] [--list]\n"
		   "Each measurement runs in a child process; malloc peers via LD_PRELOAD.\n"
		   "--check: exit 3 if a libbpfmem row crashed, hung, or did not survive the\n"
		   "         signal storm (correctness only, never timing).\n");
}

/* --check: libbpfmem's rows must never crash, hang or hand an object out twice. */
static int check_bpfmem_rows(void)
{
	int bad = 0;

	for (int i = 0; i < nr_notes; i++) {
		const char *t = notes[i].text;

		if (backends[notes[i].b].kind == BK_BPFMEM &&
		    (!strncmp(t, "CRASH", 5) || !strncmp(t, "HANG", 4) ||
		     !strncmp(t, "DEADLOCK", 8) || !strncmp(t, "double hand-out", 15) ||
		     !strncmp(t, "child exited", 12))) {
			fprintf(stderr, "bpfmem-bench: check failed: %s (%s): %s\n",
				backends[notes[i].b].name, scenarios[notes[i].s].name, t);
			bad = 1;
		}
	}
	for (int i = 0; i < nr_metrics; i++) {
		const struct metric *m = &metrics[i];

		if (backends[m->b].kind == BK_BPFMEM && !strcmp(m->name, "storm.survived") &&
		    median(m) != 1) {
			fprintf(stderr, "bpfmem-bench: check failed: %s did not survive the storm\n",
				backends[m->b].name);
			bad = 1;
		}
	}
	return bad ? 3 : 0;
}

static bool select_list(const char *arg, bool scen)
{
	char *dup = strdup(arg), *save = NULL;

	for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		bool found = false;

		for (int i = 0; i < (scen ? nr_scenarios : nr_backends); i++) {
			if (!strcmp(tok, scen ? scenarios[i].name : backends[i].name)) {
				(scen ? only_scen : only_back)[i] = true;
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "bpfmem-bench: unknown %s '%s'\n", scen ? "scenario" : "backend",
				tok);
			free(dup);
			return false;
		}
	}
	free(dup);
	return true;
}

int main(int argc, char **argv)
{
	struct bench_opts o = { 0 };
	const char *json = NULL, *plot = NULL;
	bool check = false;
	int reps = 0;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--quick"))
			o.quick = true;
	o.reps = o.quick ? 5 : 7;
	o.target_s = o.quick ? 0.005 : 0.1;
	o.xthread_objs = o.quick ? 200000 : 3000000;
	o.tail_ops = o.quick ? 200000 : 3000000;
	o.free_rcu_objs = o.quick ? 300000 : 2000000;
	o.storm_s = o.quick ? 1.0 : 10.0;
	o.storm_hz = 20000;

	if (argc >= 4 && !strcmp(argv[1], "--child"))
		return child_main(argv[2], argv[3], &o);
	if (argc >= 4 && !strcmp(argv[1], "--footprint-probe"))
		return footprint_probe(argv[2], atoi(argv[3]));

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			continue;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = argv[++i];
		} else if (!strcmp(argv[i], "--plot") && i + 1 < argc) {
			plot = argv[++i];
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			have_only_scen = true;
			if (!select_list(argv[++i], true))
				return 2;
		} else if (!strcmp(argv[i], "--backends") && i + 1 < argc) {
			have_only_back = true;
			if (!select_list(argv[++i], false))
				return 2;
		} else if (!strcmp(argv[i], "--check")) {
			check = true;
		} else if (!strcmp(argv[i], "--list")) {
			for (int s = 0; s < nr_scenarios; s++)
				printf("scenario %-10s %s\n", scenarios[s].name, scenarios[s].desc);
			for (int b = 0; b < nr_backends; b++)
				printf("backend  %-16s %s\n", backends[b].name, backends[b].desc);
			return 0;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (reps > 0)
		o.reps = reps > MAX_REPS ? MAX_REPS : reps;

	static char exe[4096];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (len <= 0) {
		fprintf(stderr, "bpfmem-bench: cannot find own executable\n");
		return 1;
	}
	exe[len] = 0;
	self_exe = exe;
	describe_machine();
	read_first_line("/proc/loadavg", load_start, sizeof(load_start));

	/* the statically linked twin sits next to this executable */
	snprintf(static_exe, sizeof(static_exe), "%s", exe);
	if (strrchr(static_exe, '/'))
		strcpy(strrchr(static_exe, '/') + 1, "bpfmem-bench-static");
	for (int b = 0; b < nr_backends; b++) {
		skip_reason[b] = backends[b].unavailable();
		if (backends[b].static_lib && access(static_exe, X_OK))
			skip_reason[b] = "bpfmem-bench-static not built (needs libbpfmem.a)";
		if (skip_reason[b] && backend_selected(b))
			fprintf(stderr, "bpfmem-bench: skipping %s: %s\n", backends[b].name,
				skip_reason[b]);
	}

	/* count the children for the progress line */
	int total = 0, done = 0;

	for (int s = 0; s < nr_scenarios; s++)
		for (int b = 0; b < nr_backends; b++)
			if (scenario_selected(s) && backend_selected(b) && !skip_reason[b] &&
			    scenarios[s].applies(&backends[b]))
				total += scenarios[s].repeat ? o.reps : 1;

	uint64_t t0 = now_ns();
	bool tty = isatty(STDERR_FILENO);

	/* repetitions outermost, backends innermost and rotated: every
	 * backend sees the same machine state, spread over the whole run */
	for (int rep = 0; rep < o.reps + 1; rep++) {
		for (int s = 0; s < nr_scenarios; s++) {
			const struct scenario *sc = &scenarios[s];

			if (!scenario_selected(s))
				continue;
			/* survival tests run once, after the last repetition */
			if (sc->repeat ? rep == o.reps : rep != o.reps)
				continue;
			for (int k = 0; k < nr_backends; k++) {
				int b = (k + rep) % nr_backends;

				if (!backend_selected(b) || skip_reason[b] || !sc->applies(&backends[b]))
					continue;
				fprintf(stderr, "%s[%3d/%3d] %5.0f s  %-9s rep %d/%d  %-16s%s",
					tty ? "\r" : "", ++done, total, (double)(now_ns() - t0) / 1e9,
					sc->name, sc->repeat ? rep + 1 : 1, sc->repeat ? o.reps : 1,
					backends[b].name, tty ? "\033[K" : "\n");
				run_child(s, b, &o);
			}
		}
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	if (tty)
		fprintf(stderr, "\n");
	read_first_line("/proc/loadavg", load_end, sizeof(load_end));
	evaluate_targets();

	print_header(stdout, &o, false, secs);
	print_summary(stdout, false);
	for (int s = 0; s < nr_scenarios; s++)
		if (scenario_selected(s))
			print_scenario(stdout, s, false);
	print_targets(stdout, false);

	if (getenv("BPFMEM_BENCH_MARKDOWN")) {
		/* gen-performance-doc.sh: the same run as Markdown */
		FILE *md = fopen(getenv("BPFMEM_BENCH_MARKDOWN"), "w");

		if (md) {
			print_header(md, &o, true, secs);
			print_summary(md, true);
			print_targets(md, true);
			fprintf(md, "\n## Results\n");
			for (int s = 0; s < nr_scenarios; s++)
				if (scenario_selected(s))
					print_scenario(md, s, true);
			fclose(md);
		}
	}
	if (json && write_json(json, &o, secs))
		return 1;
	if (plot && write_plots(plot))
		return 1;
	return check ? check_bpfmem_rows() : 0;
}
