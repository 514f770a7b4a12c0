#!/usr/bin/env bash
# label: kvm-linux
# run_serial: yes  (two guests at ~100% CPU for ~70 s: no other test beside them)
# SPDX-License-Identifier: MIT
#
# Debian's stock kernel as real input: boot configs/debian.ini's machine
# (generated here with absolute paths) with build/smvmm, once with 1 vCPU
# (Linux boot protocol) and once with 2 vCPUs (PVH), the two runs in
# parallel.
#
# Two modes, chosen from /proc/cpuinfo:
#   full  (vmx or svm: hardware virtualization)  the guest must reach
#         "smvmm-init: ok" (virtio-rng found through ACPI and read) and
#         smvmm must exit 0 after the ACPI power-off.
#   early (no vmx/svm, e.g. the kvm_pvm software KVM of our CI machines,
#         where interrupt delivery and some instructions fail): assert what
#         Linux prints about our machine before it stops: the banner, our
#         exact command line, our e820 map, one line per ACPI table with our
#         OEM id, our IOAPIC and the vCPU count; then smvmm itself must stop
#         the VM with a clear "emulation failure"/"internal error" message
#         and a non-zero exit (or, if the guest gets that far, the full-mode
#         result).
# Both modes check the early lines.
#
# Env: SMVMM_BUILD_DIR, SMVMM_SOURCE_DIR (set by ctest);
#   STOCK_TIMEOUT   seconds per run (default 300; early mode takes ~70 s on
#                   kvm_pvm)
#   STOCK_MODE      full|early: override the /proc/cpuinfo choice
#   STOCK_VMM=qemu  run QEMU's microvm (-enable-kvm, OEM id forced to SMVMM)
#                   instead of smvmm, to check this script's assertions
#                   against another VMM: QEMU's e820 map is expected, and
#                   QEMU is stopped once the last early line was printed
#                   (it does not exit on a KVM internal error).
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SMVMM_BUILD_DIR:-$SRC/build}
SMVMM=$BUILD/smvmm
TIMEOUT=${STOCK_TIMEOUT:-300}
VMM=${STOCK_VMM:-smvmm}
MEM_MIB=256
OEM=SMVMM
# Keep in sync with configs/debian.ini (checked below).
CMDLINE="console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 pci=off 8250.nr_uarts=1 tsc_early_khz=2000000"

skip() { echo "SKIP: $*"; exit 77; }

[ "$VMM" = qemu ] || . "$(dirname "$0")/lib/kvm-rig.sh" "$@"
case "$VMM" in
smvmm) [ -x "$SMVMM" ] || skip "$SMVMM not built" ;;
qemu) command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 not installed" ;;
*) echo "FAIL: STOCK_VMM must be smvmm or qemu"; exit 1 ;;
esac
[ -x /bin/busybox ] || skip "/bin/busybox missing (apt-get install busybox-static)"

grep -Fqx "cmdline = $CMDLINE" "$SRC/configs/debian.ini" ||
	{ echo "FAIL: the command line here and in configs/debian.ini differ"; exit 1; }

if [ -n "${STOCK_MODE:-}" ]; then
	MODE=$STOCK_MODE
elif grep -Eqw 'vmx|svm' /proc/cpuinfo; then
	MODE=full
else
	MODE=early
fi
case "$MODE" in full|early) ;; *) echo "FAIL: STOCK_MODE must be full or early"; exit 1 ;; esac

# In CI (CI=true) a missing kernel is a failure, not a skip.
KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir) ||
	{ [ -n "${CI:-}" ] && { echo "FAIL: scripts/fetch-guest-kernel could not provide the kernel"; exit 1; }
	  skip "scripts/fetch-guest-kernel could not provide the kernel"; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stock_kernel.XXXXXX")
PIDS=()
cleanup() {
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		kill "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
"$SRC/scripts/mkinitramfs" "$WORK/initramfs.cpio.gz" --kernel-cache "$KCACHE" 2>/dev/null ||
	{ echo "FAIL: mkinitramfs"; exit 1; }

# Expected e820 lines, as Linux prints them ("BIOS-e820: [mem %#018Lx-%#018Lx] %s",
# arch/x86/kernel/e820.c), for the map of core/arch/x86_64/x86.h: base
# memory below the EBDA, the EBDA and the ACPI area reserved, RAM from 1 MiB.
# Under PVH Linux itself adds the ISA hole [0xa0000, 0x100000) as reserved
# (arch/x86/platform/pvh/enlighten.c), which merges the two reserved ranges.
e820_line() { printf 'BIOS-e820: [mem 0x%016x-0x%016x] %s\n' "$1" "$2" "$3"; }
expected_e820() { # PROTOCOL
	local top=$(( MEM_MIB * 1024 * 1024 - 1 ))
	if [ "$VMM" = qemu ]; then
		# QEMU microvm's firmware (qboot) map.
		e820_line 0 0x9fbff usable
		e820_line 0x9fc00 0xcffff reserved
		e820_line 0xd0000 0xeffff "ACPI NVS"
		e820_line 0xf0000 0xfffff reserved
		e820_line 0x100000 $top usable
		e820_line 0xfeffc000 0xfeffffff reserved
		return
	fi
	e820_line 0 0x9fbff usable
	if [ "$1" = pvh ]; then
		e820_line 0x9fc00 0xfffff reserved
	else
		e820_line 0x9fc00 0x9ffff reserved
		e820_line 0xe0000 0xfffff reserved
	fi
	e820_line 0x100000 $top usable
}

# run NAME VCPUS PROTOCOL: boot in the background; console in NAME.out,
# smvmm's own messages in NAME.err, exit status in NAME.rc.
run() {
	local name=$1 vcpus=$2 proto=$3
	cat >"$WORK/$name.ini" <<EOF
[machine]
vcpus   = $vcpus
memory  = ${MEM_MIB}M
backend = kvm

[boot]
kernel   = $KCACHE/vmlinux
initrd   = $WORK/initramfs.cpio.gz
protocol = $proto
cmdline  = $CMDLINE

[device.rng0]
type = virtio-rng
EOF
	if [ "$VMM" = qemu ]; then
		(
			qemu-system-x86_64 -M microvm,acpi=on,auto-kernel-cmdline=off,x-oem-id=$OEM \
				-enable-kvm -cpu host -smp "$vcpus" -m ${MEM_MIB}M \
				-nodefaults -nographic -no-reboot -serial stdio \
				-global virtio-mmio.force-legacy=false \
				-kernel "$KCACHE/vmlinux" -initrd "$WORK/initramfs.cpio.gz" \
				-append "$CMDLINE" -device virtio-rng-device \
				>"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
			q=$!
			# QEMU stays paused on a KVM internal error: stop it
			# once the last early line is out (or at the timeout).
			for _ in $(seq $((TIMEOUT * 5))); do
				kill -0 $q 2>/dev/null || break
				grep -aq 'smpboot: Allowing' "$WORK/$name.out" && break
				sleep 0.2
			done
			sleep 1
			kill $q 2>/dev/null
			wait $q
			echo $? >"$WORK/$name.rc"
		) &
	else
		(
			timeout --kill-after=5 "$TIMEOUT" "$SMVMM" -c "$WORK/$name.ini" \
				>"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null
			echo $? >"$WORK/$name.rc"
		) &
	fi
	PIDS+=($!)
}

FAILS=0
bad() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

# check NAME VCPUS PROTOCOL
check() {
	local name=$1 vcpus=$2 proto=$3 log rc sig n
	log=$WORK/$name.log
	rc=$(cat "$WORK/$name.rc" 2>/dev/null || echo missing)
	tr -d '\r' <"$WORK/$name.out" >"$log"
	echo "== $name: $vcpus vCPU(s), protocol $proto, mode $MODE, $VMM exit $rc"
	local before=$FAILS

	grep -q '^\[ *[0-9.]*\] Linux version 6\.1' "$log" ||
		bad "no 'Linux version 6.1' banner"
	grep -Fq "] Command line: $CMDLINE" "$log" ||
		bad "no 'Command line: $CMDLINE'"
	diff <(expected_e820 "$proto") <(sed -n 's/^\[ *[0-9.]*\] \(BIOS-e820: .*\)$/\1/p' "$log") \
		>"$WORK/$name.e820diff" ||
		{ bad "e820 map differs (- expected, + printed):"; sed 's/^/    /' "$WORK/$name.e820diff"; }
	for sig in RSDP XSDT FACP APIC DSDT; do
		n=$(grep -Ec "\] ACPI: $sig 0x[0-9A-F]{16} [0-9A-F]{6} \(v[0-9]{2} $OEM " "$log")
		[ "$n" = 1 ] || bad "$n 'ACPI: $sig ... ($OEM' lines, expected 1"
	done
	grep -Eq '\] IOAPIC\[0\]: apic_id [0-9]+, version [0-9]+, address 0xfec00000, GSI 0-23$' "$log" ||
		bad "no 'IOAPIC[0]: ... address 0xfec00000, GSI 0-23'"
	grep -Eq "\] smpboot: Allowing $vcpus CPUs, 0 hotplug CPUs$" "$log" ||
		bad "no 'smpboot: Allowing $vcpus CPUs, 0 hotplug CPUs'"
	grep -q 'Kernel panic' "$log" && bad "kernel panic"

	local ok=0
	grep -q '^smvmm-init: ok$' "$log" && [ "$rc" = 0 ] && ok=1
	if [ "$VMM" = qemu ]; then
		: # stopped by us; the exit status says nothing
	elif [ "$MODE" = full ] || [ $ok = 1 ]; then
		grep '^smvmm-init: FAIL' "$log" && bad "/init reported a failure"
		grep -Eq '^smvmm-init: virtio[0-9]+ device=0x0004 .* driver=virtio_rng modern=yes$' "$log" ||
			bad "no modern virtio-rng bound to virtio_rng"
		grep -q '^smvmm-init: ok$' "$log" || bad "no 'smvmm-init: ok'"
		[ "$rc" = 0 ] || bad "smvmm exited with $rc, expected 0 (power-off)"
		[ $ok = 1 ] && [ "$MODE" = early ] &&
			echo "  note: the guest got through to smvmm-init: ok although no vmx/svm"
	else
		case "$rc" in
		124|137) bad "smvmm did not stop the VM within ${TIMEOUT}s" ;;
		0) bad "smvmm exited 0 without 'smvmm-init: ok'" ;;
		esac
		grep -Eq 'emulation failure|internal error' "$WORK/$name.err" ||
			bad "smvmm's stderr names no 'emulation failure' or 'internal error'"
		grep -Eq 'emulation failure|internal error' "$WORK/$name.err" &&
			echo "  stopped by: $(grep -Em1 'emulation failure|internal error' "$WORK/$name.err")"
	fi
	if [ $FAILS -ne $before ]; then
		echo "  ---- console (last 30 lines) ----"
		tail -n 30 "$log" | sed 's/^/  /'
		echo "  ---- stderr (first 10 lines) ----"
		head -n 10 "$WORK/$name.err" | sed 's/^/  /'
	else
		local extra=
		[ $ok = 1 ] && extra=", smvmm-init: ok, exit 0"
		echo "  ok: banner, command line, e820, ACPI tables, IOAPIC, $vcpus CPUs$extra"
	fi
}

echo "stock_kernel: kernel $(cat "$KCACHE/version"), $VMM, mode $MODE" \
	"($(grep -Eqw 'vmx|svm' /proc/cpuinfo && echo 'vmx/svm present' || echo 'no vmx/svm'))"
start=$(date +%s)
run up1 1 linux
run up2 2 pvh
wait
PIDS=()
echo "stock_kernel: both runs took $(( $(date +%s) - start )) s"
check up1 1 linux
check up2 2 pvh
if [ $FAILS -ne 0 ]; then
	echo "FAIL: $FAILS check(s) failed ($VMM, mode $MODE)"
	exit 1
fi
echo "PASS: stock kernel under $VMM, mode $MODE"
