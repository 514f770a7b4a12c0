#!/usr/bin/env bash
# label: qemu
# The probe guest under QEMU (microvm, TCG): validates the probe itself on a
# machine we did not write.  QEMU's firmware (qboot) enters the probe through
# its PVH note; the probe then runs the same code as on smvmm from the Linux
# 64-bit entry on.  Runs: 0, 1 and 3 virtio-rng devices (1 and 2 vCPUs), the
# interrupt path (probe.irq=1), the bzImage through the probe's own Linux
# boot loader shim (bzshim.elf), negative runs that must report "not ok",
# and both crash guests.  Needs nothing but $SMVMM_BUILD_DIR and QEMU.
set -u
B=${SMVMM_BUILD_DIR:?}
QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null; then
	echo "SKIP: $QEMU not installed"; exit 77
fi
for f in probe.elf probe.bzimage crash-triple.elf crash-emul.elf tests/guest/bzshim.elf; do
	[ -f "$B/$f" ] || { echo "not ok - $B/$f missing (build first)"; exit 1; }
done

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0 fail=0

# boot <name> <kernel> <ndev> <vcpus> <append> [extra qemu args...]
boot() {
	local name=$1 kernel=$2 ndev=$3 vcpus=$4 append=$5
	shift 5
	local devs=() i
	for ((i = 0; i < ndev; i++)); do devs+=(-device virtio-rng-device); done
	timeout 60 "$QEMU" -M microvm,acpi=on,pit=on,rtc=off -accel tcg \
		-smp "$vcpus" -m 256M -nographic -no-reboot \
		-kernel "$kernel" -append "$append" "${devs[@]}" "$@" \
		</dev/null >"$tmp/$name.out" 2>"$tmp/$name.err"
	echo $? >"$tmp/$name.rc"
	tr -d '\r' <"$tmp/$name.out" >"$tmp/$name.txt"
}

result() { # <name> <ok 0/1> <message>
	n=$((n + 1))
	if [ "$2" = 1 ]; then
		echo "ok $n - $1: $3"
	else
		echo "not ok $n - $1: $3"
		sed 's/^/#   /' "$tmp/$1.txt" "$tmp/$1.err" 2>/dev/null
		fail=$((fail + 1))
	fi
}

# A clean probe run: exit 0 after power-off, banner first, every TAP line
# "ok", the plan matches, <nrng> devices served (and interrupts if asked).
check_clean() { # <name> <nrng> <irq 0/1>
	local name=$1 nrng=$2 irq=$3 f=$tmp/$1.txt why=""
	local rc oks bad plan got irqs
	rc=$(cat "$tmp/$name.rc")
	oks=$(grep -c '^ok ' "$f")
	bad=$(grep -c '^not ok' "$f")
	plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$f")
	got=$(grep -cE '^ok [0-9]+ - virtio-rng@0x[0-9a-f]+: got [0-9]+ random bytes$' "$f")
	irqs=$(grep -cE '^ok [0-9]+ - virtio@0x[0-9a-f]+: interrupt delivered' "$f")
	[ "$rc" = 0 ] || why+=" exit $rc;"
	# (bzshim's own lines come before the probe's)
	[ "$(grep -v '^bzshim:' "$f" | head -n1)" = "smvmm-probe: hello" ] || why+=" banner not first;"
	[ "$bad" = 0 ] || why+=" $bad not ok;"
	[ "$plan" = "$oks" ] || why+=" plan '$plan' vs $oks ok;"
	grep -q "^# probe: done, $oks tests, 0 failed$" "$f" || why+=" no done line;"
	[ "$got" = "$nrng" ] || why+=" $got rng devices served, want $nrng;"
	if [ "$irq" = 1 ] && [ "$irqs" != "$nrng" ]; then
		why+=" $irqs interrupt tests, want $nrng;"
	fi
	if [ -z "$why" ]; then
		result "$name" 1 "$oks TAP ok, exit 0"
	else
		result "$name" 0 "${why% ;}"
	fi
}

# "base:irq,..." of the virtio-mmio devices the probe found in the DSDT.
mmio_of() {
	sed -n 's/^ok [0-9]* - virtio-mmio [A-Z0-9_]*: _CRS base \(0x[0-9a-f]*\) size 0x[0-9a-f]* irq \([0-9]*\) .*/\1:\2/p' \
		"$tmp/$1.txt" | paste -sd, -
}

M=(-global virtio-mmio.force-legacy=false)

# 1. Device counts; first learn QEMU's layout, then hand it back as the
#    exact expectation (probe.mmio), as smvmm's tests do with theirs.
for cfg in "d0 0 1" "d1 1 1" "d3 3 2"; do
	set -- $cfg
	boot "$1-scan" "$B/probe.elf" "$2" "$3" "probe.rng=$2 probe.devices=$2 probe.vcpus=$3" "${M[@]}"
	check_clean "$1-scan" "$2" 0
	mmio=$(mmio_of "$1-scan")
	boot "$1" "$B/probe.elf" "$2" "$3" \
		"console=ttyS0 probe.rng=$2 probe.vcpus=$3${mmio:+ probe.mmio=$mmio}" "${M[@]}"
	check_clean "$1" "$2" 0
done

# 2. The interrupt path: IOAPIC + LAPIC, sti; hlt until the device's IRQ.
boot irq3 "$B/probe.elf" 3 1 "probe.rng=3 probe.vcpus=1 probe.irq=1" "${M[@]}"
check_clean irq3 3 1

# 3. The bzImage: bzshim.elf is a PVH ELF carrying probe.bzimage; it loads
#    it like a Linux boot loader (setup header -> boot_params, protected-mode
#    part at code32_start = 1 MiB, not pref_address) and jumps to the 64-bit
#    entry, so the image header and the self-relocation are exercised.
boot bzimage "$B/tests/guest/bzshim.elf" 1 1 "probe.rng=1 probe.vcpus=1 probe.rng_bytes=256" "${M[@]}"
check_clean bzimage 1 0
f=$tmp/bzimage.txt
if grep -q '^# boot: Linux 64-bit entry' "$f" &&
	grep -q '^ok [0-9]* - boot_params setup header: boot_flag 0xAA55, magic HdrS$' "$f"; then
	result bzimage-entry 1 "probe entered through the bzImage 64-bit entry"
else
	result bzimage-entry 0 "no Linux 64-bit entry / setup header lines"
fi

# 4. The probe must be able to fail: a wrong IRQ expectation, and QEMU's
#    default legacy (version 1) virtio-mmio transport.
mmio=$(mmio_of d1)
wrong="${mmio%%:*}:$(( ${mmio##*:} + 1 ))"
boot neg-irq "$B/probe.elf" 1 1 "probe.rng=1 probe.mmio=$wrong" "${M[@]}"
bad=$(grep '^not ok' "$tmp/neg-irq.txt")
[ "$(echo "$bad" | grep -c .)" = 1 ] && echo "$bad" | grep -q 'matches cmdline # DSDT says irq'
result neg-irq $((1 - $?)) "wrong irq in probe.mmio is reported (exactly one not ok)"
boot neg-legacy "$B/probe.elf" 1 1 "probe.rng=1"
grep -q "^not ok [0-9]* - virtio@0x[0-9a-f]*: MagicValue 'virt', Version 2 # .*version 1," "$tmp/neg-legacy.txt"
result neg-legacy $((1 - $?)) "legacy virtio-mmio (version 1) is reported"
boot neg-opts "$B/probe.elf" 0 1 "probe.rng=0 probe.nonsense=1 probe.rng_bytes=0"
grep -q '^not ok [0-9]* - cmdline: probe.\* options valid # bad: probe.nonsense=1, probe.rng_bytes=0$' "$tmp/neg-opts.txt"
result neg-opts $((1 - $?)) "unknown and out-of-range options are reported"

# 5. Crash guests: a line on COM1, then the crash.  QEMU -no-reboot exits on
#    the triple fault's reset; TCG executes SSE, so crash-emul says so and
#    powers off (on kvm_pvm it ends in KVM_EXIT_INTERNAL_ERROR instead).
boot triple "$B/crash-triple.elf" 0 1 ""
grep -q '^smvmm-crash-triple: loading an empty IDT and executing ud2$' "$tmp/triple.txt" &&
	! grep -q 'still running' "$tmp/triple.txt" && [ "$(cat "$tmp/triple.rc")" = 0 ]
result triple $((1 - $?)) "printed its line, then reset (QEMU exited)"
boot emul "$B/crash-emul.elf" 0 1 ""
grep -q '^smvmm-crash-emul: executing pxor %xmm0, %xmm0$' "$tmp/emul.txt" &&
	grep -q '^smvmm-crash-emul: SSE instruction completed' "$tmp/emul.txt" &&
	[ "$(cat "$tmp/emul.rc")" = 0 ]
result emul $((1 - $?)) "printed its line; TCG ran the SSE instruction and powered off"

echo "1..$n"
echo "# $((n - fail)) passed, $fail failed"
[ $fail -eq 0 ]
