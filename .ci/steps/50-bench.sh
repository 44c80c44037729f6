#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds bench/bpfmem-bench from a clean release build and runs it in --quick mode with every
# peer (their packages are in .ci/packages/bench.txt): it must finish, with every available
# backend measured, valid JSON, and libbpfmem's rows surviving the signal storm; no timing is
# asserted (CI machines are shared).  Then the fast-path instruction budget (also in ctest,
# label unit) from the same build.
set -euo pipefail

cd "$(dirname "$0")/../.."
build=build-ci-bench
rm -rf "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFMEM_BUILD_TESTS=OFF \
	-DBPFMEM_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target bpfmem-bench bpfmem-bench-static bpfmem-fastpath-driver

out=$build/bench-out
mkdir -p "$out"
timeout 900 "$build/bench/bpfmem-bench" --quick --check --json "$out/bench.json" \
	--plot "$out/plots"

# every scenario produced rows, and the JSON parses
python3 - "$out/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
scen = {r["scenario"] for r in d["results"]}
want = {s["name"] for s in d["scenarios"]}
missing = want - scen
if missing:
    sys.exit("bench: no results for scenarios %s" % sorted(missing))
skipped = [b["name"] for b in d["backends"] if b["skipped"]]
if skipped:
    sys.exit("bench: peers skipped although CI installs them: %s" % skipped)
# correctness, not speed: libbpfmem's rows must survive the signal storm and never crash
bad = [n for n in d["notes"] if n["backend"].startswith("bpfmem")
       and (n["text"].startswith(("CRASH", "HANG", "DEADLOCK", "double hand-out")))]
survived = {r["backend"]: r["median"] for r in d["results"] if r["metric"] == "storm.survived"}
for row in ("bpfmem-cache", "bpfmem-any"):
    if survived.get(row) != 1:
        bad.append({"backend": row, "text": "storm not survived: %s" % survived.get(row)})
if bad:
    sys.exit("bench: libbpfmem failed: %s" % bad)
print("bench: %d numbers, %d scenarios, machine %s" % (len(d["results"]), len(scen),
      d["machine"]["cpu_model"]))
PY
ls "$out/plots"/*.png

bench/fastpath-guard.sh "$build/bench/bpfmem-fastpath-driver" bench/fastpath-budget.txt
