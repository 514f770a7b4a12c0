#!/usr/bin/env bash
# label: kvm-linux
# SPDX-License-Identifier: MIT
#
# Debian's stock kernel under smvmm itself, with Linux's own drivers against
# the in-process plugins: the same guest script (tests/initramfs/
# vhost-user.sh) and the same host checks (tests/initramfs/
# vhost-user-host.sh) as the vhost-user test under QEMU, so both VMM paths
# prove the same things.
#
# Devices, all smvmm plugins: virtio-blk x4 (the read-only tools disk with
# Debian's fio/socat/mkfs.ext4, a file system disk "vufs" with 2 request
# queues, a fio disk "vufio", a read-only disk "vuro"), virtio-vsock
# (Firecracker-style Unix sockets), virtio-rng.
#
# Boot 1, 2 vCPUs (mode "main"): mkfs.ext4 + a file tree, fio
# --verify=crc32c, BLKDISCARD, read-only refusal, 2 blk-mq queues; 64 MiB
# each way over vsock (sha256), 40 short connections each way; /dev/hwrng.
# The guest powers off (poweroff -f): smvmm exits 0.  Host: e2fsck -fn, the
# tree compared through debugfs, the discarded range is a hole, the
# read-only image is unchanged, both vsock checksums.
# Boot 2, 1 vCPU (mode "again"): the same disks; the fs disk survives a
# driver unbind/bind (a device reset through our virtio-mmio transport),
# its tree verifies, vsock echo works again; exit 0.
# Interrupts: Linux's drivers run on interrupts (irqfd through the
# in-kernel IOAPIC); the test checks that each virtio device's interrupt
# line counted interrupts in /proc/interrupts.
#
# Runs where KVM can boot Linux: natively on vmx/svm, elsewhere inside the
# nested-KVM rig (tests/e2e/lib/kvm-rig.sh).
# Env: SMVMM_BUILD_DIR, SMVMM_SOURCE_DIR (ctest), LINUX_KVM_MIB (vsock MiB
# each way, default 64), LINUX_KVM_TIMEOUT (per boot, s, default 600),
# LINUX_KVM_KEEP=1 keeps the work directory.
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SMVMM_BUILD_DIR:-$SRC/build}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"

MIB=${LINUX_KVM_MIB:-64}
TIMEOUT=${LINUX_KVM_TIMEOUT:-600}
CONNS=40

for t in fio socat mkfs.ext4 e2fsck debugfs sha256sum; do
	command -v $t >/dev/null 2>&1 ||
		{ echo "FAIL: $t not installed (apt-get install fio socat e2fsprogs; scripts/dev.sh deps does)"; exit 1; }
done
[ -x /bin/busybox ] || { echo "FAIL: /bin/busybox missing (apt-get install busybox-static)"; exit 1; }
[ -x "$BUILD/smvmm" ] || { echo "FAIL: $BUILD/smvmm missing"; exit 1; }
KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir) ||
	{ echo "FAIL: scripts/fetch-guest-kernel could not provide the kernel"; exit 1; }

# shellcheck source=../initramfs/vhost-user-host.sh
. "$SRC/tests/initramfs/vhost-user-host.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/linux_kvm.XXXXXX")
PIDS=()
cleanup() {
	for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ -n "${LINUX_KVM_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	for f in "$WORK"/console-*.log; do
		[ -f "$f" ] || continue
		echo "---- $(basename "$f") (last 40 lines) ----"
		tail -n 40 "$f"
	done
	for f in "$WORK"/smvmm-*.err; do
		[ -f "$f" ] || continue
		echo "---- $(basename "$f") ----"
		tail -n 15 "$f"
	done
	exit 1
}
console() { tr -d '\r' <"$1.raw" >"$1"; }

start=$(date +%s)
vu_tools_image "$WORK/tools.img" || fail "building the tools image"
# pvpanic_mmio: a guest panic is reported to smvmm (exit 2), never a reset.
VU_MODULES="pvpanic_mmio $VU_MODULES" vu_initramfs "$WORK/initrd.gz" "$KCACHE" 2>/dev/null ||
	fail "mkinitramfs"
vu_images "$WORK"
V=$WORK/v.sock
vu_vsock_servers "$V"

CMDLINE="console=ttyS0 panic=-1 pci=off 8250.nr_uarts=1 tsc_early_khz=2000000 quiet"
machine() { # machine VCPUS MODE -> $WORK/MODE.ini
	cat >"$WORK/$2.ini" <<EOF
[machine]
vcpus   = $1
memory  = 512M
backend = kvm

[boot]
kernel  = $KCACHE/vmlinux
initrd  = $WORK/initrd.gz
cmdline = $CMDLINE smvmm.vu=$2 smvmm.vu_mib=$MIB smvmm.vu_conns=$CONNS

[console]
serial = stdio

[device.tools]
type     = virtio-blk
path     = $WORK/tools.img
readonly = on
serial   = tools

[device.vufs]
type    = virtio-blk
path    = $WORK/fs.img
serial  = vufs
discard = on
queues  = 2

[device.vufio]
type    = virtio-blk
path    = $WORK/fio.img
serial  = vufio
discard = on

[device.vuro]
type     = virtio-blk
path     = $WORK/ro.img
serial   = vuro
readonly = on

[device.vsock0]
type      = virtio-vsock
guest_cid = 3
uds_path  = $V

[device.rng0]
type = virtio-rng
EOF
}
boot() { # boot VCPUS MODE: in a subshell; execs so $! is timeout's pid
	exec timeout --kill-after=5 "$TIMEOUT" "$BUILD/smvmm" -c "$WORK/$2.ini" \
		>"$WORK/console-$2.log.raw" 2>"$WORK/smvmm-$2.err" </dev/null
}

# /proc/interrupts: the guest prints its virtio lines (vhost-user.sh does
# not); check that every device's line counted interrupts.
check_irqs() { # LOG
	grep -q '^smvmm-init: ok' "$1" || fail "no 'smvmm-init: ok'"
	n=$(grep -Ec '^smvmm-init: virtio[0-9]+ device=0x000[24] .* modern=yes$' "$1")
	[ "$n" -ge 5 ] || fail "only $n modern virtio-blk/-rng devices listed"
	n=$(grep -Ec '^smvmm-init: virtio[0-9]+ device=0x0013 .*driver=vmw_vsock_virtio_transport modern=yes$' "$1")
	[ "$n" = 1 ] || fail "no modern virtio-vsock bound to vmw_vsock_virtio_transport"
	n=$(grep -c '^smvmm-init: irq virtio' "$1")
	[ "$n" = 6 ] || fail "interrupt counts for $n virtio devices, expected 6"
	grep '^smvmm-init: irq virtio' "$1" | while read -r _ _ dev c; do
		case "$c" in
		""|*[!0-9]*|0) echo "FAIL: $dev raised no interrupts ('$c')"; exit 1 ;;
		esac
	done || fail "a device raised no interrupts"
}

# ---- boot 1: 2 vCPUs, the main workload ------------------------------------
machine 2 main
LOG=$WORK/console-main.log
boot 2 main &
QPID=$!
PIDS+=($QPID)
VU_GUEST_PID=$QPID
t0=$(date +%s)
vu_vsock_host_side "$V"
wait $QPID
qrc=$?
console "$LOG"
t1=$(date +%s)
[ $qrc -ne 124 ] && [ $qrc -ne 137 ] || fail "boot 1: smvmm did not finish within ${TIMEOUT}s"
[ $qrc -eq 0 ] || fail "boot 1: smvmm exited with $qrc"
grep -q 'guest powered off (ACPI S5)' "$WORK/smvmm-main.err" || fail "boot 1: smvmm did not report the ACPI power-off"
grep -q '^smvmm-vu: done main' "$LOG" || fail "boot 1: guest script did not finish"
grep -q '^smvmm-init: cpus 2$' "$LOG" || fail "boot 1: the guest did not run with 2 vCPUs"
grep -Eq '^smvmm-init: virtio[0-9]+ device=0x0004 .*driver=virtio_rng modern=yes' "$LOG" ||
	fail "no virtio-rng bound to virtio_rng"
grep -q '^smvmm-init: hwrng ' "$LOG" || fail "no /dev/hwrng data"
check_irqs "$LOG"
[ "$(vu_val "$LOG" queues)" = "fs=2" ] || fail "the fs disk has '$(vu_val "$LOG" queues)' blk-mq queues, expected fs=2"
vu_check_main "$LOG"

# ---- boot 2: 1 vCPU, the same disks ----------------------------------------
machine 1 again
LOG=$WORK/console-again.log
(boot 1 again)
qrc=$?
console "$LOG"
t2=$(date +%s)
[ $qrc -eq 0 ] || fail "boot 2: smvmm exited with $qrc"
grep -q '^smvmm-init: cpus 1$' "$LOG" || fail "boot 2: the guest did not run with 1 vCPU"
check_irqs "$LOG"
vu_check_again "$LOG"

grep -h '^smvmm-vu: \(disks\|queues\|manifest\|h2g\|short\)\|^smvmm-init: irq' "$WORK/console-main.log"
echo "PASS: Linux $(cat "$KCACHE/version") under smvmm: blk x4 (2 queues), vsock ($MIB MiB each way, $CONNS+$CONNS connections), rng; 2 and 1 vCPUs; boot 1 $((t1 - t0)) s, boot 2 $((t2 - t1)) s, total $((t2 - start)) s"
