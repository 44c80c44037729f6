#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The unit suite with the non-default RCU flavors: RCU on urcu-memb and RCU tasks trace on
# urcu-mb (two grace-period domains, rcu_trace_implies_rcu_gp() false).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build-ci-flavors
rm -rf "$build"
cmake -S . -B "$build" -DBPFMEM_RCU_FLAVOR=memb -DBPFMEM_RCU_TRACE_FLAVOR=mb \
	-DBPFMEM_BUILD_BENCH=OFF -DBPFMEM_BUILD_EXAMPLES=OFF
cmake --build "$build" -j2
ctest --test-dir "$build" -L unit --output-on-failure
