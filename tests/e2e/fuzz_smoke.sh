#!/usr/bin/env bash
# label: fuzz
# Coverage-guided fuzzing smoke test: fuzz/run.sh 10 builds every libFuzzer
# harness with clang (its own build dir) and runs each for 10 s from the
# committed seed corpus; any crash, leak, hang or invariant failure fails the
# test.  Skips (77) without clang.  About 7 targets x 10 s plus the build.
set -u
SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if ! command -v clang >/dev/null; then
	echo "SKIP: clang not installed"
	exit 77
fi
export SMVMM_FUZZ_BUILD=${SMVMM_FUZZ_BUILD:-${SMVMM_BUILD_DIR:-$SRC/build}/fuzz-smoke}
exec bash "$SRC/fuzz/run.sh" 10
