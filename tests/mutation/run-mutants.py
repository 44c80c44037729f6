#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Plants each bug of tests/mutation/*.mutant in a copy of the sources and
runs the tests that guard against it; every bug must make one of them fail.

A mutant file names the file it edits, the function (for the reader), the
tests that must catch it and the edit itself:

    # what the bug is (comment lines start with #)
    file: lib/memalloc.c
    function: unit_free
    test: test_cache *lifo*        <- ctest name, optional T_FILTER glob
    test: test_xthread
    --- original
    <exact text, found exactly once in the file>
    --- mutant
    <the text put in its place>

The sources are copied to <build>/src (only files that changed are
rewritten, so one build directory is reused and each mutant rebuilds the
library and relinks the tests), never edited in place.  A mutant is caught
when a listed test fails with a message: an assertion, a sanitizer report,
a crash.  A test that runs into its watchdog ("WATCHDOG:") or into the
per-test timeout only hangs, and a hang does not count.  The run fails if
any mutant is not caught, if its original text does not occur exactly once
(the mutant went stale when the code changed: update it), if it does not
compile, or if a listed test fails without any mutant.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
MUTANT_DIR = os.path.join(ROOT, "tests", "mutation")


class Mutant:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[: -len(".mutant")]
        self.file = self.function = None
        self.tests = []  # (ctest name, T_FILTER or None)
        self.original = self.replacement = None
        self.parse()

    def parse(self):
        header, block, blocks = True, None, {"original": [], "mutant": []}
        with open(self.path) as f:
            for line in f.read().split("\n"):
                m = re.fullmatch(r"--- (original|mutant)", line)
                if m:
                    header, block = False, m.group(1)
                    continue
                if not header:
                    blocks[block].append(line)
                    continue
                if not line.strip() or line.startswith("#"):
                    continue
                key, _, value = line.partition(":")
                value = value.strip()
                if key == "file":
                    self.file = value
                elif key == "function":
                    self.function = value
                elif key == "test":
                    words = value.split()
                    self.tests.append((words[0], words[1] if len(words) > 1 else None))
                else:
                    raise SystemExit(f"{self.path}: unknown key {key!r}")
        # the blocks run up to the next marker; a trailing empty line of the
        # file is not part of the text
        for k in blocks:
            while blocks[k] and blocks[k][-1] == "":
                blocks[k].pop()
        self.original = "\n".join(blocks["original"]) + "\n"
        self.replacement = "\n".join(blocks["mutant"]) + "\n"
        if not (self.file and self.function and self.tests and blocks["original"]):
            raise SystemExit(f"{self.path}: needs file, function, test and --- original")
        if self.original == self.replacement:
            raise SystemExit(f"{self.path}: the mutant is the original")


def sources():
    """The files of the tree: tracked and untracked, not ignored."""
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z"],
                         check=True, capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def sync_copy(src_dir):
    for rel in sources():
        with open(os.path.join(ROOT, rel), "rb") as f:
            write_if_changed(os.path.join(src_dir, rel), f.read())
    # keep the copy's executables executable (scripts run by ctest)
    for rel in sources():
        mode = os.stat(os.path.join(ROOT, rel)).st_mode
        os.chmod(os.path.join(src_dir, rel), mode)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ctest_targets(build):
    """ctest name -> executable target built for it."""
    out = run(["ctest", "--test-dir", build, "--show-only=json-v1"], check=True).stdout
    targets = {}
    for t in json.loads(out)["tests"]:
        if t.get("command"):
            targets[t["name"]] = os.path.basename(t["command"][0])
    return targets


def build_targets(build, targets, jobs):
    r = run(["cmake", "--build", build, "-j", str(jobs), "--target", *sorted(targets)])
    return r.returncode == 0, r.stdout + r.stderr


def first_reason(output):
    """The line that says why a test failed."""
    pats = [r"WATCHDOG:", r"ERROR: (Address|Thread|UndefinedBehavior)Sanitizer", r"runtime error",
            r"^\d+: [a-z_]+: ", r"\[  (FAILED|ERROR)  ?\]", r"[Ff]ailure!|error:|Assert|assert", r"\*\*\*"]
    lines = output.splitlines()
    for pat in pats:
        for line in lines:
            if re.search(pat, line) and not line.startswith("The following tests"):
                return line.strip()[:160]
    return "(no message)"


def run_test(build, name, filt, timeout, watchdog):
    """Returns (verdict, reason, seconds): passed, failed or hung."""
    env = dict(os.environ, T_WATCHDOG_SECONDS=str(watchdog))
    env.pop("T_FILTER", None)
    if filt:
        env["T_FILTER"] = filt
    t0 = time.monotonic()
    p = subprocess.Popen(["ctest", "--test-dir", build, "-R", f"^{re.escape(name)}$",
                          "-V"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "hung", f"still running after {timeout} s (killed)", time.monotonic() - t0
    secs = time.monotonic() - t0
    if "No tests were found" in out:
        raise SystemExit(f"ctest has no test named {name}")
    if filt and re.search(r"\] 0 test\(s\) run", out):
        raise SystemExit(f"T_FILTER {filt} selects no test of {name}")
    if p.returncode == 0:
        return "passed", "", secs
    # a check that failed before a hang still counts; a hang alone does not
    if re.search(r"\[  (FAILED|ERROR)  ?\]", out):
        return "failed", first_reason(out.replace("WATCHDOG:", "watchdog:")), secs
    if "WATCHDOG:" in out or "***Timeout" in out:
        return "hung", first_reason(out), secs
    return "failed", first_reason(out), secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-mutation"),
                    help="work directory: src/ copy and build/ (reused between runs)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=90, help="per test run, seconds")
    ap.add_argument("--watchdog", type=int, default=30,
                    help="T_WATCHDOG_SECONDS for the tests, per cmocka test")
    ap.add_argument("mutants", nargs="*", help="names to run (default: all)")
    args = ap.parse_args()

    mutants = [Mutant(os.path.join(MUTANT_DIR, f))
               for f in sorted(os.listdir(MUTANT_DIR)) if f.endswith(".mutant")]
    if args.mutants:
        mutants = [m for m in mutants if m.name in args.mutants]
    if not mutants:
        raise SystemExit("no mutants to run")

    # every mutant must still apply: its original text exactly once
    stale = []
    for m in mutants:
        with open(os.path.join(ROOT, m.file)) as f:
            n = f.read().count(m.original)
        if n != 1:
            stale.append(f"{m.name}: its original text occurs {n} times in {m.file} "
                         f"({m.function}); the code changed, update the mutant")
    if stale:
        print("mutation: STALE MUTANTS\n  " + "\n  ".join(stale))
        return 1

    work = os.path.abspath(args.build)
    src, build = os.path.join(work, "src"), os.path.join(work, "build")
    t_start = time.monotonic()
    sync_copy(src)
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
             "-DBPFMEM_BUILD_BENCH=OFF", "-DBPFMEM_BUILD_EXAMPLES=OFF"], check=True)
    # everything once (ctest names a test's command only once it is built),
    # then each mutant rebuilds the library and relinks its tests only
    r = run(["cmake", "--build", build, "-j", str(args.jobs)])
    if r.returncode:
        print((r.stdout + r.stderr)[-3000:])
        raise SystemExit("mutation: the unmutated copy does not build")
    targets_of = ctest_targets(build)
    needed = {}
    for m in mutants:
        for name, _ in m.tests:
            if name not in targets_of:
                raise SystemExit(f"{m.name}: ctest has no test named {name}")
            needed[name] = targets_of[name]

    # the unmutated code passes every listed test run: else a failure
    # would say nothing about the mutant
    baseline_bad = []
    for run_spec in sorted({t for m in mutants for t in m.tests}, key=lambda t: (t[0], t[1] or "")):
        verdict, reason, secs = run_test(build, *run_spec, args.timeout, args.watchdog)
        label = run_spec[0] + (f" [{run_spec[1]}]" if run_spec[1] else "")
        print(f"baseline {label}: {verdict} {secs:.1f}s {reason}", flush=True)
        if verdict != "passed":
            baseline_bad.append(label)
    if baseline_bad:
        print("mutation: FAILED: tests fail without any mutant: " + ", ".join(baseline_bad))
        return 1

    results = []
    for m in mutants:
        path = os.path.join(src, m.file)
        with open(os.path.join(ROOT, m.file)) as f:
            pristine = f.read()
        t0 = time.monotonic()
        try:
            write_if_changed(path, pristine.replace(m.original, m.replacement).encode())
            ok, log = build_targets(build, {needed[n] for n, _ in m.tests}, args.jobs)
            if not ok:
                print(log[-3000:])
                results.append((m, "no-build", "the mutant does not compile", []))
                continue
            verdict, runs = "survived", []
            for name, filt in m.tests:
                v, reason, secs = run_test(build, name, filt, args.timeout, args.watchdog)
                label = name + (f" [{filt}]" if filt else "")
                runs.append(f"{label}: {v} ({secs:.1f}s) {reason}")
                if v == "failed":
                    verdict = "caught"
                    break
                if v == "hung":
                    verdict = "hung"
            results.append((m, verdict, "", runs))
        finally:
            write_if_changed(path, pristine.encode())
        print(f"mutant {m.name} ({m.file}: {m.function}): {results[-1][1]} "
              f"in {time.monotonic() - t0:.0f}s", flush=True)
        for line in results[-1][3]:
            print(f"    {line}", flush=True)

    print(f"\n==== mutation summary ({time.monotonic() - t_start:.0f}s)")
    bad = []
    for m, verdict, note, runs in results:
        by = runs[-1].split(":")[0] if verdict == "caught" else note or "-"
        print(f"  {m.name:<34} {m.function:<26} {verdict:<9} {by}")
        if verdict != "caught":
            bad.append(m.name)
    if bad:
        print("mutation: FAILED: not caught by a failing test (survived, only hung, or did "
              "not build): " + ", ".join(bad))
        return 1
    print(f"mutation: all {len(results)} mutants caught by a failing test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
