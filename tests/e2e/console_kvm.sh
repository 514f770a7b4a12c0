#!/usr/bin/env bash
# label: kvm
# The serial console on a terminal: smvmm runs on a pseudo-terminal (script),
# the guest's output reaches it, Ctrl-A x ends the VM with status 0, and the
# terminal is back in its original (cooked) mode afterwards.
set -u
B=${SMVMM_BUILD_DIR:?}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
command -v script >/dev/null || { echo "not ok - script(1) missing (bsdutils)"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
check() { local d=$1; shift; n=$((n + 1)); if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fail=$((fail + 1)); fi; }

printf '[machine]\nmemory = 64M\n[boot]\nkernel = %s\ncmdline = console=ttyS0 probe.spin=1\n' "$B/probe.elf" >"$tmp/spin.ini"
# Inside the pty: run smvmm, then print the terminal mode it left behind.
cat >"$tmp/inner.sh" <<INNER
"$B/smvmm" -c "$tmp/spin.ini"
echo "smvmm-exit=\$?"
stty -a | grep -o -- '-\?icanon' | head -1 | sed 's/^/mode=/'
INNER
# Wait for the guest to be spinning, then type Ctrl-A x.
( for _ in $(seq 100); do grep -q 'spinning' "$tmp/out" 2>/dev/null && break; sleep 0.1; done
  printf '\001x' ) | timeout 30 script -qefc "bash $tmp/inner.sh" /dev/null >"$tmp/out" 2>&1
check "guest output reached the terminal" grep -q 'smvmm-probe: hello' "$tmp/out"
check "Ctrl-A x stops the VM with a message" grep -q 'stopped from the console (Ctrl-A x)' "$tmp/out"
check "exit status 0" grep -q 'smvmm-exit=0' "$tmp/out"
check "terminal restored to canonical mode" grep -q 'mode=icanon' "$tmp/out"
[ $fail = 0 ] || sed 's/^/#   /' "$tmp/out" | tail -20
echo "$((n - fail)) passed, $fail failed"
[ $fail = 0 ]
