#!/usr/bin/env bash
# label: kvm
# Nothing lost: ROUNDS (default 50) boots of the probe guest with a
# virtio-blk disk.  In round R the probe writes pattern R to sectors
# 8R..8R+7, sends FLUSH and, once the FLUSH completed OK, prints
#   ok N - virtio-blk@...: round R written and flushed
# on COM1.  The host reads the serial output as a stream and SIGKILLs smvmm
# the moment that line arrives (probe.spin=1: the guest never exits on its
# own).  Afterwards the image must hold every round's pattern: a write whose
# FLUSH was acknowledged survives the VMM's death.  The image lock must also
# die with each killed VMM, or the next round could not open the image.
set -u
B=${SMVMM_BUILD_DIR:?}
ROUNDS=${BLK_SIGKILL_ROUNDS:-50}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
for f in smvmm probe.elf smvmm-virtio-blk.so; do
	[ -e "$B/$f" ] || { echo "not ok - $B/$f missing"; exit 1; }
done

tmp=$(mktemp -d); pid=
cleanup() {
	[ -n "$pid" ] && { kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
	rm -rf "$tmp"
}
trap cleanup EXIT
img=$tmp/disk.img
truncate -s 1M "$img"
mkfifo "$tmp/serial"

fail=0 t0=$(date +%s.%N)
for ((r = 0; r < ROUNDS; r++)); do
	cat >"$tmp/vm.ini" <<-EOF
	[machine]
	vcpus = 1
	memory = 64M
	[boot]
	kernel = $B/probe.elf
	cmdline = console=ttyS0 probe.blk=1 probe.blk_round=$r probe.spin=1
	[console]
	serial = stdio
	[device.disk0]
	type = virtio-blk
	path = $img
	EOF
	"$B/smvmm" -c "$tmp/vm.ini" </dev/null >"$tmp/serial" 2>"$tmp/err" &
	pid=$!
	seen=0
	: >"$tmp/log"
	while IFS= read -r -t 30 line; do
		printf '%s\n' "$line" >>"$tmp/log"
		case "$line" in
		"ok "*"round $r written and flushed"*)
			kill -9 "$pid"; seen=1; break ;;
		"not ok"*)
			break ;;
		esac
	done <"$tmp/serial"
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	rc=$?
	pid=
	if [ $seen -ne 1 ] || [ $rc -ne 137 ]; then
		echo "not ok $((r + 1)) - round $r: flushed line seen: $seen, exit $rc"
		sed 's/^/#   /' "$tmp/log" "$tmp/err"
		fail=$((fail + 1))
		continue
	fi
	echo "ok $((r + 1)) - round $r: killed (SIGKILL) right after the FLUSH was acknowledged"
done

# Every flushed round must be in the image, the rest still zero.
awk -v n="$ROUNDS" 'BEGIN {
	for (s = 0; s < 8 * n; s++)
		for (i = 0; i < 32; i++)
			printf "%06x:%05x:%02x\n", int(s / 8), s, i }' >"$tmp/expect"
n=$((ROUNDS + 1))
if cmp -n $((ROUNDS * 4096)) "$img" "$tmp/expect" >"$tmp/cmp" 2>&1 &&
	cmp -n $((1048576 - ROUNDS * 4096)) --ignore-initial=$((ROUNDS * 4096)):0 "$img" /dev/zero >/dev/null 2>&1; then
	echo "ok $n - image holds all $ROUNDS flushed writes"
else
	echo "not ok $n - image content: $(head -1 "$tmp/cmp")"
	fail=$((fail + 1))
fi
echo "1..$n"
printf '%d rounds in %.1f s, %d failed\n' "$ROUNDS" "$(awk "BEGIN{print $(date +%s.%N) - $t0}")" $fail
[ $fail -eq 0 ]
