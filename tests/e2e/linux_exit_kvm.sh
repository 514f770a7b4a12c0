#!/usr/bin/env bash
# label: kvm-linux
# SPDX-License-Identifier: MIT
#
# smvmm's exit statuses and its serial console with Debian's stock kernel
# and the test initramfs (tests/initramfs/init), 1 vCPU, one virtio-rng:
#
#   reboot    /init ends with reboot -f (FADT reset register): exit 0,
#             "guest requested a reset"
#   panic     /init panics the kernel (sysrq c; panic=-1): pvpanic reports
#             it, exit 2, "guest kernel panicked"
#   sigterm   SIGTERM to smvmm while Linux boots: exit 143 (128 + 15)
#   console   smvmm on a pseudo-terminal (script(1)) with smvmm.shell=1: a
#             command typed at the guest's shell runs and its output comes
#             back; Ctrl-A x stops the VM with exit 0; the terminal is back
#             in canonical mode afterwards
#
# (poweroff -f -> exit 0 is in linux_kvm.sh and stock_kernel.sh.)  Runs
# natively on vmx/svm, elsewhere inside the nested-KVM rig.
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SMVMM_BUILD_DIR:-$SRC/build}
TIMEOUT=${LINUX_EXIT_TIMEOUT:-300}
KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir) ||
	{ echo "FAIL: scripts/fetch-guest-kernel could not provide the kernel"; exit 1; }
# The initramfs is built before entering the rig (see lib/kvm-rig.sh).
if [ -z "${KVM_RIG_PREP:-}" ]; then
	KVM_RIG_PREP=$(mktemp -d "${TMPDIR:-/tmp}/linux_exit.prep.XXXXXX")
	export KVM_RIG_PREP
	trap 'rm -rf "$KVM_RIG_PREP"' EXIT
	"$SRC/scripts/mkinitramfs" "$KVM_RIG_PREP/initrd.gz" --kernel-cache "$KCACHE" 2>/dev/null ||
		{ echo "FAIL: mkinitramfs"; exit 1; }
fi
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"

command -v script >/dev/null || { echo "FAIL: script(1) missing (bsdutils)"; exit 1; }
[ -x "$BUILD/smvmm" ] || { echo "FAIL: $BUILD/smvmm missing"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/linux_exit.XXXXXX")
trap 'rm -rf "$WORK" "${KVM_RIG_PREP_OWNED:-}"' EXIT
[ -n "${SMVMM_IN_L1:-}" ] || KVM_RIG_PREP_OWNED=$KVM_RIG_PREP
cp "$KVM_RIG_PREP/initrd.gz" "$WORK/initrd.gz" || { echo "FAIL: no prepared initramfs"; exit 1; }

fail=0 n=0
check() { local d=$1; shift; n=$((n + 1)); if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fail=$((fail + 1)); FAILED_CASE=1; fi; }
show() { # NAME: the console and stderr of a failed case
	echo "#   ---- $1: console (last 25 lines) ----"
	tr -d '\r' <"$WORK/$1.out" | tail -n 25 | sed 's/^/#   /'
	echo "#   ---- $1: stderr ----"
	tail -n 10 "$WORK/$1.err" | sed 's/^/#   /'
}

machine() { # NAME EXTRA-CMDLINE
	cat >"$WORK/$1.ini" <<EOF
[machine]
vcpus   = 1
memory  = 256M
[boot]
kernel  = $KCACHE/vmlinux
initrd  = $WORK/initrd.gz
cmdline = console=ttyS0 panic=-1 pci=off 8250.nr_uarts=1 tsc_early_khz=2000000 $2
[device.rng0]
type = virtio-rng
EOF
}
run() { # NAME EXTRA-CMDLINE: boot to the end; status in $rc
	machine "$1" "$2"
	timeout --kill-after=5 "$TIMEOUT" "$BUILD/smvmm" -c "$WORK/$1.ini" \
		</dev/null >"$WORK/$1.out" 2>"$WORK/$1.err"
	rc=$?
}
has() { grep -aq -- "$2" "$WORK/$1.$3"; }
hasnt() { ! has "$@"; }

# reboot -f
FAILED_CASE=0
run reboot "smvmm.end=reboot"
check "reboot -f: exit 0 (got $rc)" [ "$rc" = 0 ]
check "reboot -f: the init ran to its end" has reboot '^smvmm-init: ok' out
check "reboot -f: smvmm reports the reset" has reboot 'guest requested a reset' err
[ $FAILED_CASE = 0 ] || show reboot

# kernel panic
FAILED_CASE=0
run panic "smvmm.end=panic"
check "panic: exit 2 (got $rc)" [ "$rc" = 2 ]
check "panic: the kernel panicked" has panic 'Kernel panic - not syncing' out
check "panic: smvmm reports the panic" has panic 'guest kernel panicked (pvpanic event)' err
[ $FAILED_CASE = 0 ] || show panic

# SIGTERM while Linux boots
FAILED_CASE=0
machine sigterm ""
"$BUILD/smvmm" -c "$WORK/sigterm.ini" </dev/null >"$WORK/sigterm.out" 2>"$WORK/sigterm.err" &
pid=$!
booting=0
for _ in $(seq $((TIMEOUT * 10))); do
	grep -aq 'Linux version' "$WORK/sigterm.out" && { booting=1; break; }
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
kill -TERM $pid 2>/dev/null
( sleep 30; kill -KILL $pid 2>/dev/null ) &
guard=$!
wait $pid
rc=$?
kill $guard 2>/dev/null
check "SIGTERM during boot: Linux was booting when the signal came" [ $booting = 1 ]
check "SIGTERM during boot: exit 143 (got $rc)" [ "$rc" = 143 ]
check "SIGTERM during boot: the init never finished" hasnt sigterm '^smvmm-init: ok' out
[ $FAILED_CASE = 0 ] || show sigterm

# The interactive console on a pseudo-terminal.
FAILED_CASE=0
machine console "smvmm.shell=1 smvmm.rng=off"
cat >"$WORK/inner.sh" <<INNER
"$BUILD/smvmm" -c "$WORK/console.ini" 2>"$WORK/console.err"
echo "smvmm-exit=\$?"
stty -a | grep -o -- '-\?icanon' | head -1 | sed 's/^/mode=/'
INNER
: >"$WORK/console.out"
# Type once the shell is up; then Ctrl-A x once the command's output is back.
(
	for _ in $(seq $((TIMEOUT * 10))); do grep -aq 'starting a shell' "$WORK/console.out" && break; sleep 0.1; done
	sleep 2
	printf 'echo answer-$((6 * 7))\r'
	for _ in $(seq 300); do grep -aq 'answer-42' "$WORK/console.out" && break; sleep 0.1; done
	printf '\001x'
) | timeout "$TIMEOUT" script -qefc "bash $WORK/inner.sh" /dev/null >"$WORK/console.out" 2>&1
check "console: the guest's shell ran the typed command" has console 'answer-42' out
check "console: Ctrl-A x stops the VM with a message" has console 'stopped from the console (Ctrl-A x)' err
check "console: exit 0" has console 'smvmm-exit=0' out
check "console: terminal restored to canonical mode" has console 'mode=icanon' out
[ $FAILED_CASE = 0 ] || show console

echo "$((n - fail)) passed, $fail failed"
[ $fail = 0 ]
