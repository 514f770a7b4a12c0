#!/usr/bin/env bash
# label: qemu
# SPDX-License-Identifier: MIT
#
# `smvmm vhost-user` under Linux's own drivers: the stock Debian kernel in
# QEMU's microvm (TCG, so no KVM needed) with our device plugins attached as
# vhost-user back-ends, one `smvmm vhost-user` process each:
#
#   vhost-user-blk x3          virtio-blk plugin: a file system disk
#                              (serial vufs), a fio disk (vufio), a
#                              read-only disk (vuro)
#   vhost-user-vsock-device    virtio-vsock plugin, Firecracker-style Unix
#                              sockets on the host
#   vhost-user-rng             virtio-rng plugin
#   virtio-blk-device          QEMU's own: the read-only tools disk (fio,
#                              socat, mkfs.ext4 from Debian)
#
# Boot 1 (guest: tests/initramfs/vhost-user.sh, mode "main"): mkfs.ext4 and a
# tree of files, fio --verify=crc32c, BLKDISCARD, read-only refusal; 64 MiB
# each way over vsock with checksums, 40 short connections each way; the
# init's own virtio-rng checks (/sys/class/misc/hw_random, /dev/hwrng).
# Host checks: e2fsck -fn, the tree compared through debugfs, the discarded
# range is a hole in the image, the read-only image is unchanged, both
# vsock checksums.
# Boot 2 (mode "again"): a new QEMU against the SAME back-end processes
# (reconnect): the file system disk survives a driver unbind/bind (QEMU
# stops the rings with GET_VRING_BASE and starts them again), the tree
# still verifies, vsock and rng work again.
# Finally SIGTERM: every back-end exits 0 and removes its socket.
#
# Env: SMVMM_BUILD_DIR, SMVMM_SOURCE_DIR (ctest), QEMU, SMVMM_VU_MIB (vsock
# bytes each way in MiB, default 64), SMVMM_VU_TIMEOUT (per boot, s, 300),
# SMVMM_VU_KEEP=1 keeps the work directory (logs, images).
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SMVMM_BUILD_DIR:-$SRC/build}
QEMU=${QEMU:-qemu-system-x86_64}
MIB=${SMVMM_VU_MIB:-64}
TIMEOUT=${SMVMM_VU_TIMEOUT:-300}
CONNS=40

skip() { echo "SKIP: $*"; exit 77; }
command -v "$QEMU" >/dev/null 2>&1 || skip "$QEMU not installed (apt-get install qemu-system-x86)"
"$QEMU" -device help 2>/dev/null | grep -q '"vhost-user-blk"' || skip "$QEMU has no vhost-user-blk"
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"
for t in fio socat mkfs.ext4 e2fsck debugfs sha256sum; do
	command -v $t >/dev/null 2>&1 || skip "$t not installed (apt-get install fio socat e2fsprogs)"
done
[ -x "$BUILD/smvmm" ] || { echo "FAIL: $BUILD/smvmm missing"; exit 1; }
for p in virtio-rng virtio-blk virtio-vsock; do
	[ -f "$BUILD/smvmm-$p.so" ] || { echo "FAIL: $BUILD/smvmm-$p.so missing"; exit 1; }
done
KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir) ||
	skip "scripts/fetch-guest-kernel could not provide the kernel"

# shellcheck source=../initramfs/vhost-user-host.sh
. "$SRC/tests/initramfs/vhost-user-host.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vhost_user_qemu.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ -n "${SMVMM_VU_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	for f in "$WORK"/console*.log; do
		[ -f "$f" ] || continue
		echo "---- $(basename "$f") (last 40 lines) ----"
		tail -n 40 "$f"
	done
	for f in "$WORK"/be-*.log; do
		echo "---- $(basename "$f") ----"
		tail -n 15 "$f"
	done
	exit 1
}

start=$(date +%s)
vu_tools_image "$WORK/tools.img" || fail "building the tools image"
vu_initramfs "$WORK/initrd.gz" "$KCACHE" 2>/dev/null || fail "mkinitramfs"

vu_images "$WORK"

V=$WORK/v.sock
cat >"$WORK/blk-fs.ini" <<EOF
[device.vufs]
type = virtio-blk
path = $WORK/fs.img
serial = vufs
discard = on
EOF
cat >"$WORK/blk-fio.ini" <<EOF
[device.vufio]
type = virtio-blk
path = $WORK/fio.img
serial = vufio
discard = on
EOF
cat >"$WORK/blk-ro.ini" <<EOF
[device.vuro]
type = virtio-blk
path = $WORK/ro.img
serial = vuro
readonly = on
EOF
cat >"$WORK/vsock.ini" <<EOF
[device.vsock0]
type = virtio-vsock
guest_cid = 3
uds_path = $V
EOF
cat >"$WORK/rng.ini" <<EOF
[device.rng0]
type = virtio-rng
EOF

# One back-end process per device, serving front-ends one after the other.
BACKENDS="blk-fs blk-fio blk-ro vsock rng"
declare -A BPID
for b in $BACKENDS; do
	SMVMM_PLUGIN_PATH=$BUILD "$BUILD/smvmm" vhost-user --socket "$WORK/$b.sock" \
		-c "$WORK/$b.ini" >"$WORK/be-$b.log" 2>&1 &
	BPID[$b]=$!
	PIDS+=($!)
done
for b in $BACKENDS; do
	vu_wait_log "$WORK/be-$b.log" 'serving' 10 || fail "back-end $b did not start"
	[ -S "$WORK/$b.sock" ] || fail "back-end $b: no socket"
done

vu_vsock_servers "$V"

vu_qemu_args 512M
CMDLINE="console=ttyS0 panic=-1 reboot=t pci=off 8250.nr_uarts=1 tsc_early_khz=2000000 quiet"
boot() { # boot MODE LOG; run in a subshell: it execs (so $! is timeout's pid,
	 # and a TERM to it reaches QEMU)
	local mode=$1 log=$2
	exec timeout --kill-after=5 "$TIMEOUT" "$QEMU" "${VU_QEMU[@]}" \
		-kernel "$KCACHE/vmlinux" -initrd "$WORK/initrd.gz" \
		-append "$CMDLINE smvmm.vu=$mode smvmm.vu_mib=$MIB smvmm.vu_conns=$CONNS" \
		-drive file="$WORK/tools.img",format=raw,if=none,id=tools,readonly=on \
		-device virtio-blk-device,drive=tools,serial=tools \
		-chardev socket,id=cfs,path="$WORK/blk-fs.sock" \
		-device vhost-user-blk,chardev=cfs \
		-chardev socket,id=cfio,path="$WORK/blk-fio.sock" \
		-device vhost-user-blk,chardev=cfio \
		-chardev socket,id=cro,path="$WORK/blk-ro.sock" \
		-device vhost-user-blk,chardev=cro \
		-chardev socket,id=cvs,path="$WORK/vsock.sock" \
		-device vhost-user-vsock-device,chardev=cvs \
		-chardev socket,id=crng,path="$WORK/rng.sock" \
		-device vhost-user-rng,chardev=crng \
		>"$log.raw" 2>&1 </dev/null
}

# Follow the console, converting CR LF as we go.
console() { tr -d '\r' <"$1.raw" >"$1"; }

# ---- boot 1 ---------------------------------------------------------------
LOG=$WORK/console-main.log
boot main "$LOG" &
QPID=$!
PIDS+=($QPID)
t0=$(date +%s)

VU_GUEST_PID=$QPID
vu_vsock_host_side "$V"
wait $QPID
qrc=$?
console "$LOG"
t1=$(date +%s)
[ $qrc -ne 124 ] && [ $qrc -ne 137 ] || fail "boot 1: QEMU did not finish within ${TIMEOUT}s"
[ $qrc -eq 0 ] || fail "boot 1: QEMU exited with $qrc"
grep -q '^smvmm-init: ok' "$LOG" || fail "boot 1: no 'smvmm-init: ok'"
grep -q '^smvmm-vu: done main' "$LOG" || fail "boot 1: guest script did not finish"
grep -Eq '^smvmm-init: virtio[0-9]+ device=0x0004 .*driver=virtio_rng modern=yes' "$LOG" ||
	fail "no vhost-user-rng device bound to virtio_rng"
grep -q '^smvmm-init: hwrng ' "$LOG" || fail "no /dev/hwrng data"

# ---- host checks after boot 1 ----------------------------------------------
vu_check_main "$LOG"

# ---- boot 2: a new front-end on the same back-ends -------------------------
LOG=$WORK/console-again.log
(boot again "$LOG")
qrc=$?
console "$LOG"
t2=$(date +%s)
[ $qrc -eq 0 ] || fail "boot 2: QEMU exited with $qrc"
grep -q '^smvmm-init: ok' "$LOG" || fail "boot 2: no 'smvmm-init: ok'"
vu_check_again "$LOG"

# ---- the back-ends saw two sessions and stop cleanly -----------------------
for b in $BACKENDS; do
	n=$(grep -c 'front-end connected' "$WORK/be-$b.log")
	[ "$n" = 2 ] || fail "back-end $b: $n sessions, expected 2"
	grep -q 'error' "$WORK/be-$b.log" && fail "back-end $b logged an error"
	kill -TERM "${BPID[$b]}"
done
for b in $BACKENDS; do
	wait "${BPID[$b]}"
	rc=$?
	[ $rc = 0 ] || fail "back-end $b exited with $rc after SIGTERM"
	[ ! -e "$WORK/$b.sock" ] || fail "back-end $b left its socket"
done

grep '^smvmm-vu: \(disks\|manifest\|h2g\|short\)' "$WORK/console-main.log"
echo "PASS: vhost-user blk x3, vsock ($MIB MiB each way, $CONNS+$CONNS connections), rng under QEMU TCG; reconnect; boot 1 $((t1 - t0)) s, boot 2 $((t2 - t1)) s, total $((t2 - start)) s"
