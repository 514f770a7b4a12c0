#!/usr/bin/env bash
# label: kvm
# virtio-vsock end to end: the probe guest on KVM with a virtio-vsock device,
# host programs are socat (Debian package), exactly as a Firecracker user
# would talk to a guest:
#   1. guest-initiated: the probe connects to CID 2 port 5000; smvmm forwards
#      it to "<uds_path>_5000" where `socat UNIX-LISTEN:..._5000,fork EXEC:cat`
#      echoes; the probe sends $BYTES of a pattern and checks the echo (FNV-1a
#      checksums both ways);
#   2. host-initiated: the probe listens on port 6000; socat connects to
#      uds_path, sends "CONNECT 6000\n" and $BYTES of random data; smvmm
#      answers "OK <port>\n", the probe echoes everything back; we compare
#      the echo with the input and the probe's byte count and checksum;
#   3. configuration errors name the key (--check).
# The guest runs at ~1 µs per instruction on software KVM, so $BYTES is
# 128 KiB per direction here; the driver-model unit test (test_vsock) moves
# 16 MiB each way.
set -u
B=${SMVMM_BUILD_DIR:?}
BYTES=${VSOCK_E2E_BYTES:-131072}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
if ! command -v socat >/dev/null; then
	echo "SKIP: socat not installed (apt-get install socat)"; exit 77
fi
[ -f "$B/probe.elf" ] && [ -f "$B/smvmm-virtio-vsock.so" ] || {
	echo "not ok - $B/probe.elf or smvmm-virtio-vsock.so missing"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); echo "not ok $n - $*"; fail=$((fail + 1)); }

uds=$tmp/v.sock
cat >"$tmp/vm.ini" <<EOF
[machine]
vcpus = 1
memory = 64M
[boot]
kernel = $B/probe.elf
cmdline = console=ttyS0 probe.vsock=1 probe.vsock_cid=3 probe.vsock_port=5000 probe.vsock_listen=6000 probe.vsock_bytes=$BYTES probe.timeout_ms=20000
[console]
serial = stdio
[device.vsock0]
type = virtio-vsock
guest_cid = 3
uds_path = $uds
EOF

# 1. the echo server for guest-initiated connections
socat -t 60 UNIX-LISTEN:"${uds}_5000",fork EXEC:cat 2>"$tmp/socat-echo.err" &
pids+=($!)
for _ in $(seq 50); do [ -S "${uds}_5000" ] && break; sleep 0.1; done

head -c "$BYTES" /dev/urandom >"$tmp/in.bin"
t0=$(date +%s.%N)
timeout 120 "$B/smvmm" -c "$tmp/vm.ini" </dev/null >"$tmp/out" 2>"$tmp/err" &
vm=$!
pids+=($vm)

# 2. host-initiated: wait for the probe to listen, then CONNECT through socat
for _ in $(seq 600); do
	grep -q '^# vsock: listening on port 6000' "$tmp/out" && break
	kill -0 $vm 2>/dev/null || break
	sleep 0.1
done
if grep -q '^# vsock: listening on port 6000' "$tmp/out"; then
	{ printf 'CONNECT 6000\n'; cat "$tmp/in.bin"; } |
		timeout 60 socat -t 60 - UNIX-CONNECT:"$uds" >"$tmp/echo.bin" 2>"$tmp/socat-connect.err"
	rc=$?
	line=$(head -n 1 "$tmp/echo.bin")
	if [[ "$line" =~ ^OK\ [0-9]+$ ]] && [ "${line#OK }" -ge 1073741824 ]; then
		ok "host CONNECT 6000 answered \"$line\""
	else
		bad "host CONNECT 6000: reply \"$line\" (socat exit $rc)"
	fi
	if tail -c +$((${#line} + 2)) "$tmp/echo.bin" | cmp -s - "$tmp/in.bin"; then
		ok "host-initiated: $BYTES bytes echoed back by the guest unchanged"
	else
		bad "host-initiated: echo differs ($(($(stat -c %s "$tmp/echo.bin") - ${#line} - 1)) of $BYTES bytes back)"
	fi
else
	bad "the probe never listened on port 6000"
fi

wait $vm
vmrc=$?
t1=$(date +%s.%N)
if [ $vmrc -eq 0 ] && ! grep -q '^not ok' "$tmp/out" && grep -q '^1\.\.' "$tmp/out" &&
	grep -q '^ok .*guest-initiated echo of '"$BYTES"' bytes each way, checksums match' "$tmp/out" &&
	grep -q '^ok .*host-initiated echo of '"$BYTES"' bytes' "$tmp/out"; then
	ok "probe: every TAP line ok, both echoes done ($(grep -c '^ok ' "$tmp/out") ok, $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s)"
else
	bad "probe: smvmm exit $vmrc"
	sed 's/^/#   /' "$tmp/out" "$tmp/err" | tail -40
fi
# The probe's checksum of what it received equals ours of what we sent.
if command -v python3 >/dev/null; then
	want=$(python3 -c '
import sys
h = 2166136261
for b in open(sys.argv[1], "rb").read():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("0x%08x" % h)' "$tmp/in.bin")
	got=$(sed -n 's/^# vsock: server received [0-9]* bytes, fnv \(0x[0-9a-f]*\).*/\1/p' "$tmp/out")
	if [ "$want" = "$got" ]; then ok "host->guest FNV-1a checksum $got matches"
	else bad "host->guest checksum: probe $got, host $want"; fi
fi

# 3. configuration errors name the key
check_err() { # key value expect
	sed -e "s|^guest_cid = .*|guest_cid = 3|" "$tmp/vm.ini" >"$tmp/bad.ini"
	sed -i -e "s|^$1 = .*|$1 = $2|" "$tmp/bad.ini"
	if "$B/smvmm" --check -c "$tmp/bad.ini" >"$tmp/chk.out" 2>&1; then
		bad "--check accepted $1 = $2"
	elif grep -q "\[device.vsock0\] $1: .*$3" "$tmp/chk.out"; then
		ok "--check: $1 = $2 -> $(grep -o "\[device.vsock0\] $1: .*" "$tmp/chk.out" | head -1)"
	else
		bad "--check: $1 = $2: unexpected message"; sed 's/^/#   /' "$tmp/chk.out"
	fi
}
check_err guest_cid 2 "out of range"
check_err guest_cid abc "not a number"
touch "$tmp/regular"
check_err uds_path "$tmp/regular" "not a socket"

echo "$((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]
