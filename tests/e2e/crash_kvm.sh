#!/usr/bin/env bash
# label: kvm
# Guests that crash the vCPU must end smvmm within seconds with a clear
# message (exit reason, RIP, instruction bytes, registers) and exit status 2,
# never hang.
set -u
B=${SMVMM_BUILD_DIR:?}
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
hw=0; grep -qwE 'vmx|svm' /proc/cpuinfo && hw=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
# Wait (up to 60 s: start-up inside the rig reads the binary over 9p) until
# the spinning guest runs, so the VMM has its signal handling in place.
wait_spin() { # file
	local i=0
	while [ $i -lt 600 ] && ! grep -q 'probe: spinning' "$1" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
	grep -q 'probe: spinning' "$1" || echo "# guest never reported spinning in $1"
}
check() { # description, then a command that must succeed
	n=$((n + 1))
	local d=$1; shift
	if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fail=$((fail + 1)); fi
}
boot() { # guest -> $tmp/<guest>.{out,err,rc,secs}
	printf '[machine]\nmemory = 64M\n[boot]\nkernel = %s\ncmdline = console=ttyS0\n' "$B/$1.elf" >"$tmp/$1.ini"
	local t0=$(date +%s%N)
	timeout 20 "$B/smvmm" -c "$tmp/$1.ini" </dev/null >"$tmp/$1.out" 2>"$tmp/$1.err"
	echo $? >"$tmp/$1.rc"
	echo $((($(date +%s%N) - t0) / 1000000)) >"$tmp/$1.ms"
	sed 's/^/#   /' "$tmp/$1.out" "$tmp/$1.err" | head -12
}

boot crash-triple
check "triple fault: exit status 2 (got $(cat $tmp/crash-triple.rc))" [ "$(cat $tmp/crash-triple.rc)" = 2 ]
check "triple fault: message names it" grep -q 'triple fault' "$tmp/crash-triple.err"
check "triple fault: registers printed (rip, cr3, cs)" \
	grep -qE '^rip=[0-9a-f]{16}.*' "$tmp/crash-triple.err"
check "triple fault: ended in $(cat $tmp/crash-triple.ms) ms (< 5000)" [ "$(cat $tmp/crash-triple.ms)" -lt 5000 ]
check "triple fault: guest output came first" grep -q 'loading an empty IDT' "$tmp/crash-triple.out"

boot crash-emul
if [ $hw = 0 ]; then
	check "emulation failure: exit status 2 (got $(cat $tmp/crash-emul.rc))" [ "$(cat $tmp/crash-emul.rc)" = 2 ]
	check "emulation failure: exit reason and suberror" \
		grep -q 'internal error: suberror 1 (emulation failure)' "$tmp/crash-emul.err"
	check "emulation failure: RIP and instruction bytes (66 0f ef c0 = pxor)" \
		grep -qE 'at RIP 0x[0-9a-f]+, instruction bytes: 66 0f ef c0' "$tmp/crash-emul.err"
else
	echo "# hardware KVM: SSE runs natively; the guest powers off instead"
	check "SSE guest completes on hardware KVM" grep -q 'SSE instruction completed' "$tmp/crash-emul.out"
fi
check "emulation guest ended in $(cat $tmp/crash-emul.ms) ms (< 5000)" [ "$(cat $tmp/crash-emul.ms)" -lt 5000 ]

# A guest that never stops is ended by a signal, with status 128+N.
printf '[machine]\nmemory = 64M\n[boot]\nkernel = %s\ncmdline = console=ttyS0 probe.spin=1\n' "$B/probe.elf" >"$tmp/spin.ini"
"$B/smvmm" -c "$tmp/spin.ini" </dev/null >"$tmp/spin.out" 2>"$tmp/spin.err" &
pid=$!
wait_spin "$tmp/spin.out"
kill -TERM $pid
t0=$(date +%s%N)
wait $pid; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "SIGTERM: exit status 143 (got $rc) within $ms ms" [ $rc = 143 -a $ms -lt 3000 ]
check "SIGTERM: says why" grep -q 'stopped by signal' "$tmp/spin.err"

# The same with a device plugin that starts worker threads in create()
# (virtio-blk): those threads exist before the VM starts and must not take
# the signal themselves (its default action would kill the process with no
# clean shutdown, no message and the terminal left raw).
if [ -e "$B/smvmm-virtio-blk.so" ]; then
	truncate -s 1M "$tmp/spin.img"
	printf '[device.disk0]\ntype = virtio-blk\npath = %s\n' "$tmp/spin.img" >>"$tmp/spin.ini"
	"$B/smvmm" -c "$tmp/spin.ini" </dev/null >"$tmp/spin-blk.out" 2>"$tmp/spin-blk.err" &
	pid=$!
	wait_spin "$tmp/spin-blk.out"
	kill -TERM $pid
	wait $pid; rc=$?
	check "SIGTERM with plugin threads: exit status 143 (got $rc)" [ $rc = 143 ]
	check "SIGTERM with plugin threads: handled, says why" grep -q 'stopped by signal' "$tmp/spin-blk.err"
fi

echo "$((n - fail)) passed, $fail failed"
[ $fail = 0 ]
