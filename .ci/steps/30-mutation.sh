#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Mutation check: every planted bug of tests/mutation/*.mutant, applied to a copy of the
# sources and rebuilt incrementally (Release, no sanitizers), must make one of the tests it
# names fail with a message; a hang (the tests' watchdog or the per-test timeout) does not
# count.  Fails on a surviving or stale mutant and prints the table of what caught what.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 tests/mutation/run-mutants.py --build build-ci-mutation --jobs 2 --timeout 90 \
	--watchdog 30
