#!/usr/bin/env bash
# label: kvm
# virtio-blk on KVM: the probe guest drives a [device.disk0] type = virtio-blk
# by polling (GET_ID, read, write, FLUSH, DISCARD, WRITE_ZEROES, out-of-range
# and malformed requests; tests/guest/blk.c), then the host checks the image
# byte for byte.  Also: a read-only disk (writes fail, image unchanged), and
# image locking between two running VMs.
set -u
B=${SMVMM_BUILD_DIR:?}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
for f in smvmm probe.elf smvmm-virtio-blk.so; do
	[ -e "$B/$f" ] || { echo "not ok - $B/$f missing"; exit 1; }
done

tmp=$(mktemp -d); pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0; n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); echo "not ok $n - $*"; fail=$((fail + 1)); }

SECTORS=2048 SEED=4660 # 0x1234
# pattern SEED FIRST COUNT: sectors FIRST.. of the probe's pattern (blk.c).
pattern() {
	awk -v seed="$1" -v first="$2" -v n="$3" 'BEGIN {
		for (s = first; s < first + n; s++)
			for (r = 0; r < 32; r++)
				printf "%06x:%05x:%02x\n", seed, s, r }'
}
img=$tmp/disk.img
pattern $SEED 0 $SECTORS >"$img"
[ "$(stat -c %s "$img")" = $((SECTORS * 512)) ] || { echo "not ok - pattern generator"; exit 1; }

# ini NAME EXTRA_CMDLINE [EXTRA_DEVICE_KEYS...]
ini() {
	local name=$1 cmd=$2; shift 2
	{
		printf '[machine]\nvcpus = 1\nmemory = 64M\n'
		printf '[boot]\nkernel = %s\n' "$B/probe.elf"
		printf 'cmdline = console=ttyS0 probe.blk=1 probe.blk_sectors=%s probe.blk_serial=disk-0 probe.blk_seed=0x%x %s\n' \
			$SECTORS $SEED "$cmd"
		printf '[console]\nserial = stdio\n'
		printf '[device.disk0]\ntype = virtio-blk\npath = %s\nserial = disk-0\n' "$img"
		for kv in "$@"; do printf '%s\n' "$kv"; done
	} >"$tmp/$name.ini"
}

# boot NAME: run to power-off, every TAP line ok, the blk lines present.
boot() {
	local name=$1 rc oks bad blk
	timeout 60 "$B/smvmm" -c "$tmp/$name.ini" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
	oks=$(grep -c '^ok ' "$tmp/$name.out")
	bad=$(grep -c '^not ok' "$tmp/$name.out")
	blk=$(grep -c '^ok .*virtio-blk' "$tmp/$name.out")
	if [ $rc -ne 0 ] || [ "$bad" -ne 0 ] || [ "$blk" -lt 10 ] || ! grep -q '^1\.\.' "$tmp/$name.out"; then
		notok "$name: exit $rc, $oks ok ($blk virtio-blk), $bad not ok"
		sed 's/^/#   /' "$tmp/$name.out" "$tmp/$name.err"
		return 1
	fi
	ok "$name: exit 0, $oks TAP ok ($blk virtio-blk)"
}

# 1. read-write disk, default cache (writeback), discard on.
blocks0=$(stat -c %b "$img")
ini rw ""
if boot rw; then
	# What the probe did: sectors 16-23 = pattern SEED+1, 64-127 discarded
	# (punched: zeroes), 128-135 write-zeroed; everything else untouched.
	cp "$img" "$tmp/before-check.img"
	pattern $SEED 0 $SECTORS >"$tmp/expect.img"
	pattern $((SEED + 1)) 16 8 | dd of="$tmp/expect.img" bs=512 seek=16 conv=notrunc status=none
	dd if=/dev/zero of="$tmp/expect.img" bs=512 seek=64 count=72 conv=notrunc status=none
	if cmp "$img" "$tmp/expect.img" >"$tmp/cmp" 2>&1; then
		ok "rw: image content is exactly what the guest wrote, discarded and zeroed"
	else
		notok "rw: image content: $(head -1 "$tmp/cmp")"
	fi
	size=$(stat -c %s "$img") blocks=$(stat -c %b "$img")
	[ "$size" = $((SECTORS * 512)) ] && ok "rw: image size unchanged ($size)" ||
		notok "rw: image size $size"
	# DISCARD punched a hole: at least the 32 KiB discarded are freed.
	[ "$blocks" -le $((blocks0 - 64)) ] && ok "rw: DISCARD freed blocks ($blocks0 -> $blocks 512-byte blocks)" ||
		notok "rw: DISCARD freed no blocks ($blocks0 -> $blocks)"
fi

# 2. cache=none and unsafe, two queues: same checks from the guest side.
for c in none unsafe; do
	pattern $SEED 0 $SECTORS >"$img"
	ini "cache-$c" "" "cache = $c" "queues = 2"
	boot "cache-$c" && {
		pattern $((SEED + 1)) 16 8 | cmp - "$img" --ignore-initial=0:$((16 * 512)) -n 4096 >/dev/null &&
			ok "cache-$c: written sectors reached the image" ||
			notok "cache-$c: written sectors not in the image"
	}
done

# 3. read-only: writes fail inside the guest, the image is not modified.
pattern $SEED 0 $SECTORS >"$img"
sum0=$(md5sum <"$img")
ini ro "probe.blk_ro=1" "readonly = on"
boot ro && {
	[ "$(md5sum <"$img")" = "$sum0" ] && ok "ro: image unchanged" || notok "ro: image modified"
}

# 4. Locking: a second VM cannot open the image a running VM has open
#    read-write (nor read-only); a clear error, exit 1.
ini spin "probe.spin=1"
"$B/smvmm" -c "$tmp/spin.ini" </dev/null >"$tmp/spin.out" 2>"$tmp/spin.err" &
pid=$!; pids+=("$pid")
for _ in $(seq 1 300); do
	grep -q 'probe: spinning' "$tmp/spin.out" && break
	sleep 0.05
done
if ! grep -q 'probe: spinning' "$tmp/spin.out"; then
	notok "lock: first VM did not come up"; sed 's/^/#   /' "$tmp/spin.out" "$tmp/spin.err"
else
	for ro in off on; do
		ini "second-$ro" "" "readonly = $ro"
		timeout 30 "$B/smvmm" -c "$tmp/second-$ro.ini" </dev/null >"$tmp/second.out" 2>"$tmp/second.err"
		rc=$?
		if [ $rc -eq 1 ] && grep -q "\[device.disk0\] path: .*in use" "$tmp/second.err"; then
			ok "lock: second VM (readonly = $ro) refused: $(grep -m1 'in use' "$tmp/second.err" | cut -c1-150)"
		else
			notok "lock: second VM (readonly = $ro) exit $rc"; sed 's/^/#   /' "$tmp/second.err"
		fi
	done
fi
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pids=()
# The lock dies with the process: the image is usable again.
ini again ""
pattern $SEED 0 $SECTORS >"$img"
boot again

echo "1..$n"
echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]
