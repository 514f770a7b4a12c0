#!/usr/bin/env bash
# label: qemu
# SPDX-License-Identifier: MIT
#
# The reference run: Debian's stock kernel + our initramfs under QEMU's
# microvm machine (TCG, so it runs anywhere), with a virtio-rng on
# virtio-mmio described only in ACPI (auto-kernel-cmdline=off: no
# virtio_mmio.device= on the command line), in modern mode (virtio-mmio
# version 2, as smvmm implements it).  Proves that the initramfs, the module
# load order and ACPI discovery work with Linux's own drivers, independent
# of smvmm.  Asserts "smvmm-init: ok", a modern virtio_rng device, a clean
# ACPI power-off and QEMU exit status 0.
#
# Env: SMVMM_SOURCE_DIR (set by ctest), QEMU (default
# qemu-system-x86_64), SMVMM_QEMU_TIMEOUT (seconds, default 60).
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
QEMU=${QEMU:-qemu-system-x86_64}
TIMEOUT=${SMVMM_QEMU_TIMEOUT:-60}

command -v "$QEMU" >/dev/null 2>&1 || { echo "SKIP: $QEMU not installed (apt-get install qemu-system-x86)"; exit 77; }
[ -x /bin/busybox ] || { echo "SKIP: /bin/busybox missing (apt-get install busybox-static)"; exit 77; }

# fetch-guest-kernel needs the Debian archive the first time; without it
# (no network, no apt lists) this is an environment problem on a developer's
# machine, but in CI (CI=true), which installs everything, it is a failure.
if ! KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir); then
	echo "scripts/fetch-guest-kernel could not provide the kernel"
	[ -n "${CI:-}" ] && exit 1
	echo "SKIP: no guest kernel"
	exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/initramfs_qemu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$SRC/scripts/mkinitramfs" "$WORK/initramfs.cpio.gz" --kernel-cache "$KCACHE" ||
	{ echo "FAIL: mkinitramfs"; exit 1; }

# The uncompressed ELF has a PVH note: QEMU enters it directly in 32-bit
# mode, which is noticeably faster under TCG than decompressing the bzImage.
# tsc_early_khz: under TCG the PIT calibration is unreliable (it sometimes
# fails and the boot stalls); a fixed value makes the run deterministic.
CMDLINE="console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 reboot=t pci=off 8250.nr_uarts=1 tsc_early_khz=2000000"
LOG=$WORK/console.log
start=$(date +%s%N)
timeout --kill-after=5 "$TIMEOUT" "$QEMU" \
	-M microvm,acpi=on,pit=on,rtc=on,auto-kernel-cmdline=off \
	-accel tcg -m 256M -smp 1 -nodefaults -nographic -no-reboot \
	-serial stdio \
	-global virtio-mmio.force-legacy=false \
	-kernel "$KCACHE/vmlinux" -initrd "$WORK/initramfs.cpio.gz" \
	-append "$CMDLINE" \
	-device virtio-rng-device >"$LOG.raw" 2>&1 </dev/null
rc=$?
end=$(date +%s%N)
# The 8250 console ends lines with CR LF.
tr -d '\r' <"$LOG.raw" >"$LOG"
ms=$(( (end - start) / 1000000 ))

fail() {
	echo "FAIL: $*"
	echo "---- console (last 60 lines) ----"
	tail -n 60 "$LOG"
	exit 1
}

[ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "QEMU did not finish within ${TIMEOUT}s"
grep -q '^smvmm-init: start' "$LOG" || fail "/init never started"
grep '^smvmm-init: FAIL' "$LOG" && fail "/init reported a failure"
grep -q '^smvmm-init: ok' "$LOG" || fail "no 'smvmm-init: ok'"
grep -Eq '^smvmm-init: virtio[0-9]+ device=0x0004 vendor=0x[0-9a-f]+ driver=virtio_rng modern=yes$' "$LOG" ||
	fail "no modern virtio-rng device bound to virtio_rng"
grep -q 'reboot: Power down' "$LOG" || fail "the kernel did not power off"
grep -q 'Kernel panic' "$LOG" && fail "kernel panic"
# The device must have come from the DSDT, not from the command line.
grep -q 'virtio_mmio\.device=' "$LOG" && fail "virtio_mmio.device= on the command line: not ACPI discovery"
grep -q 'ACPI: DSDT ' "$LOG" || fail "no DSDT"
[ $rc -eq 0 ] || fail "QEMU exited with $rc"

grep '^smvmm-init: virtio' "$LOG"
echo "PASS: stock kernel $(cat "$KCACHE/version") + initramfs under QEMU microvm (TCG) in ${ms} ms"
