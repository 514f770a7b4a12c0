#!/usr/bin/env bash
# fuzz/run.sh [seconds-per-target]: configure a clang build (build-fuzz,
# -DSMVMM_FUZZ=ON), build every libFuzzer harness (fuzz/fuzz_*.c) and run
# each for N seconds (default 30), starting from its seed corpus in
# fuzz/corpus/<target>/.  The working corpus grows in build-fuzz/fuzz/corpus/
# (the committed seeds are never modified).  Exit status 1 if any target
# crashed, leaked, hung or failed an invariant; the reproducer is left in
# build-fuzz/fuzz/artifacts/<target>/ and its path printed.
#
# Environment: SMVMM_FUZZ_BUILD (build dir, default <src>/build-fuzz),
# SMVMM_FUZZ_TARGETS (space-separated subset, e.g. "virtq boot"),
# SMVMM_FUZZ_JOBS (build parallelism, default nproc).
set -euo pipefail
SECS=${1:-30}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${SMVMM_FUZZ_BUILD:-$SRC/build-fuzz}
JOBS=${SMVMM_FUZZ_JOBS:-$(nproc)}

command -v clang >/dev/null || { echo "fuzz/run.sh: clang not installed" >&2; exit 2; }

CC=clang cmake -S "$SRC" -B "$BUILD" -DSMVMM_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
if [ -n "${SMVMM_FUZZ_TARGETS:-}" ]; then
	for t in $SMVMM_FUZZ_TARGETS; do targets+=("$t"); done
else
	for f in "$SRC"/fuzz/fuzz_*.c; do
		t=$(basename "$f" .c)
		targets+=("${t#fuzz_}")
	done
fi
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]/#/fuzz_}" >/dev/null

# Per-target options: the device and vhost-user targets log a line per
# oddity on stderr; close_fd_mask=2 hides that while libFuzzer and the
# sanitizers keep reporting on a duplicate of stderr.
declare -A OPTS=(
	[virtq]="-max_len=4096"
	[mmio]="-max_len=4096 -close_fd_mask=2"
	[machine]="-max_len=4096 -dict=$SRC/fuzz/machine.dict"
	[boot]="-max_len=8192"
	[vhost_user]="-max_len=8192 -close_fd_mask=2"
	[blk]="-max_len=4096 -close_fd_mask=2"
	[vsock]="-max_len=4096 -close_fd_mask=2"
)

fail=0
for t in "${targets[@]}"; do
	bin=$BUILD/fuzz/fuzz_$t
	corpus=$BUILD/fuzz/corpus/$t
	art=$BUILD/fuzz/artifacts/$t
	log=$BUILD/fuzz/$t.log
	mkdir -p "$corpus" "$art"
	seeds=$SRC/fuzz/corpus/$t
	[ -d "$seeds" ] || seeds=
	# -timeout: one input taking > 10 s is a hang; -rss_limit_mb: a leak
	# or unbounded allocation.  timeout(1) is the backstop.
	set +e
	# shellcheck disable=SC2086
	timeout --kill-after=10 $((SECS + 60)) "$bin" \
		-max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" \
		${OPTS[$t]:-} "$corpus" $seeds >"$log" 2>&1
	rc=$?
	set -e
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ $rc -ne 0 ]; then
		echo "FAIL $t (exit $rc, ${execs:-?} execs): see $log"
		grep -E 'ERROR:|SUMMARY:|invariant failed|device bug|Test unit written' \
			"$log" | head -n 10 | sed 's/^/    /'
		fail=1
	else
		echo "ok   $t: ${execs:-?} execs, ${cov:-cov: ?} edges"
	fi
done
exit $fail
