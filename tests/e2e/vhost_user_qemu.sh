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

# Disk images: sparse file system and fio disks, a random read-only one.
truncate -s 64M "$WORK/fs.img"
truncate -s 32M "$WORK/fio.img"
head -c $((4 << 20)) /dev/urandom >"$WORK/ro.img"
ro_sha=$(sha256sum <"$WORK/ro.img" | cut -c1-64)

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

# Host side of vsock: a sink for guest->host data, an echo server.
socat -u UNIX-LISTEN:"${V}_5000" CREATE:"$WORK/g2h.bin" 2>"$WORK/socat-5000.log" &
PIDS+=($!)
socat UNIX-LISTEN:"${V}_5001",fork EXEC:cat 2>/dev/null &
PIDS+=($!)
head -c $((MIB << 20)) /dev/urandom >"$WORK/h2g.bin"
h2g_sha=$(sha256sum <"$WORK/h2g.bin" | cut -c1-64)

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

wait_guest() { # RE SECS
	local i=0
	while [ $i -lt $(($2 * 5)) ]; do
		console "$LOG"
		grep -Eq "$1" "$LOG" && return 0
		grep -q 'smvmm-vu: FAIL\|smvmm-init: FAIL' "$LOG" && fail "guest failed"
		kill -0 $QPID 2>/dev/null || { console "$LOG"; grep -Eq "$1" "$LOG" && return 0; fail "QEMU exited before '$1'"; }
		sleep 0.2
		i=$((i + 1))
	done
	fail "timeout waiting for '$1'"
}

# host -> guest: the guest listens on 6000; CONNECT it (Firecracker's
# handshake: "CONNECT <port>\n", answer "OK <host port>\n").
wait_guest '^smvmm-vu: listening 6000' "$TIMEOUT"
ok=0
for try in 1 2 3 4 5; do
	(printf 'CONNECT 6000\n'; cat "$WORK/h2g.bin") |
		socat -t 60 - UNIX-CONNECT:"$V" >"$WORK/h2g.resp" 2>/dev/null
	grep -q '^OK [0-9]*$' "$WORK/h2g.resp" && { ok=1; break; }
	sleep 1
done
[ $ok = 1 ] || fail "host-initiated CONNECT 6000 was not accepted: $(head -c 100 "$WORK/h2g.resp")"

# many short host -> guest connections to the guest's echo server
wait_guest '^smvmm-vu: echo 6001' 120
i=1
while [ $i -le $CONNS ]; do
	resp=$(printf 'CONNECT 6001\nhello %d\n' $i | socat -t 10 - UNIX-CONNECT:"$V" 2>/dev/null)
	want=$(printf 'hello %d' $i)
	case "$resp" in
	"OK "*"$want") ;;
	*) fail "short connection $i to the guest: got '$resp'" ;;
	esac
	i=$((i + 1))
done
printf 'CONNECT 6002\n%d\n' $CONNS | socat -t 10 - UNIX-CONNECT:"$V" >/dev/null 2>&1 ||
	fail "CONNECT 6002"
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
val() { sed -n "s/^smvmm-vu: $1 //p" "$LOG" | head -n1; }

# virtio-blk: the file system is clean and holds exactly the guest's tree.
e2fsck -fn "$WORK/fs.img" >"$WORK/e2fsck.log" 2>&1 || { cat "$WORK/e2fsck.log"; fail "e2fsck -fn found problems"; }
mkdir "$WORK/dump"
debugfs -R "rdump / $WORK/dump" "$WORK/fs.img" >/dev/null 2>&1 || fail "debugfs rdump"
man=$(val manifest | cut -d' ' -f1)
[ "$(sha256sum <"$WORK/dump/manifest" | cut -c1-64)" = "$man" ] ||
	fail "the manifest in the image is not the one the guest wrote"
(cd "$WORK/dump" && sha256sum --quiet -c manifest) >"$WORK/cmp.log" 2>&1 ||
	{ cat "$WORK/cmp.log"; fail "files in the image differ from the guest's"; }
nfiles=$(wc -l <"$WORK/dump/manifest")
[ "$nfiles" -ge 38 ] || fail "only $nfiles files in the manifest"
[ ! -e "$WORK/dump/gone" ] || fail "a deleted file is still in the image"
grep -q '^smvmm-vu: fio verify ok' "$LOG" || fail "fio verify"
# BLKDISCARD of [16M, 32M) punched a hole in the host file.
grep -q '^smvmm-vu: discard ok' "$LOG" || fail "discard"
alloc=$(( $(stat -c %b "$WORK/fio.img") * $(stat -c %B "$WORK/fio.img") ))
[ $alloc -le $((17 << 20)) ] || fail "fio.img still has $alloc bytes allocated after discarding 16 MiB of 32"
[ "$(dd if="$WORK/fio.img" bs=1M skip=16 count=16 2>/dev/null | tr -d '\0' | wc -c)" = 0 ] ||
	fail "the discarded range of fio.img is not zero"
# read-only: unchanged, and the guest read the same bytes.
[ "$(sha256sum <"$WORK/ro.img" | cut -c1-64)" = "$ro_sha" ] || fail "the read-only image changed"
[ "$(val ro)" = "$ro_sha" ] || fail "the guest read different bytes from the read-only disk"

# virtio-vsock: both directions arrived intact.
[ "$(val g2h | head -n1)" != "" ] || fail "no guest->host checksum"
[ "$(sha256sum <"$WORK/g2h.bin" | cut -c1-64)" = "$(val g2h | head -n1)" ] ||
	fail "guest->host data differs ($(stat -c %s "$WORK/g2h.bin") bytes received)"
[ "$(val h2g | cut -d' ' -f1)" = "$h2g_sha" ] ||
	fail "host->guest data differs (guest: $(val h2g))"
grep -q "^smvmm-vu: short g2h $CONNS ok" "$LOG" || fail "short guest->host connections"
grep -q "^smvmm-vu: short h2g $CONNS" "$LOG" || fail "short host->guest connections"

# ---- boot 2: a new front-end on the same back-ends -------------------------
LOG=$WORK/console-again.log
(boot again "$LOG")
qrc=$?
console "$LOG"
t2=$(date +%s)
[ $qrc -eq 0 ] || fail "boot 2: QEMU exited with $qrc"
grep -q '^smvmm-init: ok' "$LOG" || fail "boot 2: no 'smvmm-init: ok'"
grep -q '^smvmm-vu: again rebind ok' "$LOG" || fail "boot 2: driver rebind"
grep -q '^smvmm-vu: again manifest ok' "$LOG" || fail "boot 2: the tree does not verify"
grep -q '^smvmm-vu: again vsock ok' "$LOG" || fail "boot 2: vsock"
[ "$(val ro)" = "$ro_sha" ] || fail "boot 2: read-only disk"
e2fsck -fn "$WORK/fs.img" >/dev/null 2>&1 || fail "boot 2: e2fsck after a read-only mount"

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
