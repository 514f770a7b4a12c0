#!/usr/bin/env bash
# label: cli
# The smvmm command line without a hypervisor: --help, --version, --check,
# --dump-acpi (tables through iasl -d), and each machine-description error
# reported as file:line with the section and key, exit status 1, no crash.
set -u
B=${SMVMM_BUILD_DIR:?}
S=${SMVMM_SOURCE_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=$((fail + 1)); }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

"$B/smvmm" --help >"$tmp/help" 2>&1
check "--help exits 0 and shows usage" grep -q 'Usage: smvmm -c MACHINE.ini' "$tmp/help"
"$B/smvmm" --version >"$tmp/ver" 2>&1
check "--version names the plugin ABI" grep -qE '^smvmm [0-9.]+ \(plugin ABI 1\.0' "$tmp/ver"
"$B/smvmm" >/dev/null 2>"$tmp/noarg"; rc=$?
check "no -c: exit 1 with a message" [ $rc = 1 ] && grep -q 'no machine description' "$tmp/noarg"

# --check prints the planned layout.
cat >"$tmp/ok.ini" <<INI
[machine]
vcpus = 2
memory = 4G
[boot]
kernel = $B/probe.elf
cmdline = console=ttyS0
[device.a]
type = virtio-rng
[device.b]
type = virtio-rng
irq = 9
mmio_base = 0xd0000000
[device.c]
type = virtio-rng
rate_limit = 64K
INI
"$B/smvmm" --check -c "$tmp/ok.ini" >"$tmp/plan" 2>&1; rc=$?
check "--check exits 0" [ $rc = 0 ]
check "--check: fixed placement honoured (b at 0xd0000000 irq 9)" \
	grep -qE '0x00000000d0000000-0x00000000d00001ff virtio-mmio b +irq +9' "$tmp/plan"
check "--check: planned devices go around it (a at 0xd0001000 irq 5)" \
	grep -qE '0x00000000d0001000-0x00000000d00011ff virtio-mmio a +irq +5' "$tmp/plan"
check "--check: RAM above 4 GiB for a 4G machine" \
	grep -q '0x0000000100000000-0x000000013fffffff RAM' "$tmp/plan"
check "--check: COM1 on irq 4" grep -q 'COM1 (8250 UART) irq 4' "$tmp/plan"

# --append adds to [boot] cmdline; the boot code bounds the result.
"$B/smvmm" --check -c "$tmp/ok.ini" --append "smvmm.shell=1 x=y" >"$tmp/plan2" 2>&1
check "--append: the cmdline gets the text after a space" \
	grep -q '^  cmdline: console=ttyS0 smvmm.shell=1 x=y$' "$tmp/plan2"
"$B/smvmm" --check -c "$tmp/ok.ini" \
	--append "$(head -c 5000 /dev/zero | tr '\0' a)" >/dev/null 2>"$tmp/long.err"; rc=$?
check "--append: a cmdline over 4095 bytes is refused (exit 1, named)" \
	[ $rc = 1 ] && grep -q 'smvmm: --append: cmdline with the appended text is 5014 bytes long, the maximum is 4095' "$tmp/long.err"

# --dump-acpi writes every table, and iasl disassembles them.
if "$B/smvmm" -c "$tmp/ok.ini" --dump-acpi "$tmp/acpi" >/dev/null 2>"$tmp/acpi.err"; then
	check "--dump-acpi wrote RSDP XSDT FACP APIC DSDT" \
		test -s "$tmp/acpi/RSDP.dat" -a -s "$tmp/acpi/XSDT.dat" -a -s "$tmp/acpi/FACP.dat" \
		-a -s "$tmp/acpi/APIC.dat" -a -s "$tmp/acpi/DSDT.dat"
	if command -v iasl >/dev/null; then
		(cd "$tmp/acpi" && iasl -d DSDT.dat >"$tmp/iasl.out" 2>&1)
		check "iasl -d DSDT.dat: no errors" [ $? = 0 ] && ! grep -qi 'error' "$tmp/iasl.out"
		check "DSDT: three LNRO0005 devices" [ "$(grep -c 'LNRO0005' "$tmp/acpi/DSDT.dsl")" = 3 ]
		check "DSDT: device b's window" grep -qi '0xD0000000' "$tmp/acpi/DSDT.dsl"
	else
		bad "iasl missing (install acpica-tools)"
	fi
else
	bad "--dump-acpi failed: $(cat "$tmp/acpi.err")"
fi

# Each bad machine description: exit 1, "<file>:<line>:" and the key.
expect_err() { # name, expected regex, INI text
	printf '%s\n' "$3" >"$tmp/$1.ini"
	"$B/smvmm" --check -c "$tmp/$1.ini" >"$tmp/$1.out" 2>&1; local rc=$?
	if [ $rc = 1 ] && grep -qE -- "$2" "$tmp/$1.out"; then ok "$1: $(head -1 "$tmp/$1.out")"
	else bad "$1: exit $rc, expected /$2/, got: $(head -3 "$tmp/$1.out")"; fi
	grep -qE 'Sanitizer|runtime error|Segmentation' "$tmp/$1.out" && bad "$1: crashed"
}
K="kernel = $B/probe.elf"
expect_err typo-key "$tmp/typo-key.ini:3: \[machine\] memroy" "[machine]
vcpus = 1
memroy = 64M
[boot]
$K"
expect_err typo-section "$tmp/typo-section.ini:1: .*machin" "[machin]
vcpus = 1
[boot]
$K"
expect_err bad-unit "$tmp/bad-unit.ini:2: \[machine\] memory" "[machine]
memory = 12Q
[boot]
$K"
expect_err no-kernel "$tmp/no-kernel.ini.*(\[boot\]|kernel)" "[machine]
vcpus = 1
[boot]
cmdline = x"
expect_err missing-kernel-file "$tmp/missing-kernel-file.ini:2: \[boot\] kernel" "[boot]
kernel = /nonexistent/vmlinuz"
expect_err dup-device "$tmp/dup-device.ini:6: .*device.r" "[boot]
$K
[device.r]
type = virtio-rng
[device.q]
[device.r]
type = virtio-rng"
expect_err same-irq "$tmp/same-irq.ini:[0-9]+: \[device.y\] irq" "[boot]
$K
[device.x]
type = virtio-rng
irq = 7
[device.y]
type = virtio-rng
irq = 7"
expect_err same-mmio "$tmp/same-mmio.ini:[0-9]+: \[device.y\] mmio_base" "[boot]
$K
[device.x]
type = virtio-rng
mmio_base = 0xd0002000
[device.y]
type = virtio-rng
mmio_base = 0xd0002000"
expect_err unknown-type "$tmp/unknown-type.ini:4: \[device.x\] type: smvmm-virtio-nope.so" "[boot]
$K
[device.x]
type = virtio-nope"
expect_err plugin-key "$tmp/plugin-key.ini:5: \[device.x\] rate_limt" "[boot]
$K
[device.x]
type = virtio-rng
rate_limt = 10"
expect_err plugin-value "$tmp/plugin-value.ini:5: \[device.x\] rate_limit" "[boot]
$K
[device.x]
type = virtio-rng
rate_limit = lots"
expect_err bad-backend "$tmp/bad-backend.ini:.*backend" "[machine]
backend = hvf
[boot]
$K"
head -c 4096 /dev/urandom >"$tmp/garbage.bin"
printf '[boot]\nkernel = %s\n' "$tmp/garbage.bin" >"$tmp/garbage.ini"
"$B/smvmm" -c "$tmp/garbage.ini" </dev/null >"$tmp/garbage.out" 2>&1; rc=$?
check "random bytes as kernel: exit 1 naming the file ($(head -1 "$tmp/garbage.out"))" \
	[ $rc = 1 ] && grep -q 'garbage.bin' "$tmp/garbage.out"

# A FIFO (or anything but a regular file) as the machine description, the
# kernel, the initrd or a read-only disk image is refused at once, naming the
# file; opening it must not block waiting for a writer.
mkfifo "$tmp/fifo"
expect_fifo() { # name, expected regex, smvmm args...
	local name=$1 re=$2; shift 2
	timeout -s KILL 10 "$B/smvmm" "$@" </dev/null >"$tmp/$name.out" 2>&1; local rc=$?
	if [ $rc = 1 ] && grep -qE -- "$re" "$tmp/$name.out"; then ok "$name: $(head -1 "$tmp/$name.out")"
	elif [ $rc = 137 ]; then bad "$name: hung (killed after 10 s)"
	else bad "$name: exit $rc, expected /$re/, got: $(head -3 "$tmp/$name.out")"; fi
}
expect_fifo fifo-config "$tmp/fifo: not a regular file" -c "$tmp/fifo"
expect_fifo fifo-config-check "$tmp/fifo: not a regular file" --check -c "$tmp/fifo"
printf '[boot]\nkernel = %s\n' "$tmp/fifo" >"$tmp/fifo-kernel.ini"
expect_fifo fifo-kernel "fifo-kernel.ini:2: \[boot\] kernel: $tmp/fifo: not a regular file" -c "$tmp/fifo-kernel.ini"
printf '[boot]\nkernel = %s\ninitrd = fifo\n' "$B/probe.elf" >"$tmp/fifo-initrd.ini"
expect_fifo fifo-initrd "fifo-initrd.ini:3: \[boot\] initrd: $tmp/fifo: not a regular file" --check -c "$tmp/fifo-initrd.ini"
printf '[boot]\n%s\n[device.d]\ntype = virtio-blk\npath = %s\nreadonly = on\n' "$K" "$tmp/fifo" >"$tmp/fifo-disk.ini"
expect_fifo fifo-disk "fifo-disk.ini:5: \[device.d\] path: .*neither a regular file nor a block device" --check -c "$tmp/fifo-disk.ini"

# Device paths are relative to the INI file, not the working directory, and
# --check touches no file: a stale vsock socket is left, a live one (another
# VM's) is reported and left.
mkdir -p "$tmp/rel"
truncate -s 1M "$tmp/rel/disk.raw"
printf '[boot]\n%s\n[device.d]\ntype = virtio-blk\npath = disk.raw\n[device.v]\ntype = virtio-vsock\nguest_cid = 3\nuds_path = v.sock\n' "$K" >"$tmp/rel/m.ini"
(cd / && "$B/smvmm" --check -c "$tmp/rel/m.ini") >"$tmp/rel.out" 2>&1; rc=$?
check "relative device paths from another cwd: --check exits 0 ($(head -1 "$tmp/rel.out"))" [ $rc = 0 ]
check "--check created no vsock socket" test ! -e "$tmp/rel/v.sock" -a ! -e /v.sock
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$tmp/rel/v.sock"
(cd / && "$B/smvmm" --check -c "$tmp/rel/m.ini") >"$tmp/rel2.out" 2>&1; rc=$?
check "--check with a stale vsock socket: exit 0 ($(head -1 "$tmp/rel2.out"))" [ $rc = 0 ]
check "--check left the stale socket alone" test -S "$tmp/rel/v.sock"
rm -f "$tmp/rel/v.sock"
python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); open(sys.argv[1]+".up","w").close(); time.sleep(30)' "$tmp/rel/v.sock" &
lpid=$!
for _ in $(seq 100); do [ -e "$tmp/rel/v.sock.up" ] && break; sleep 0.05; done
cd /
timeout -s KILL 10 "$B/smvmm" --check -c "$tmp/rel/m.ini" >"$tmp/rel3.out" 2>&1; rc=$?
check "--check with a live vsock socket: exit 1 ($(head -1 "$tmp/rel3.out"))" [ $rc = 1 ]
check "--check with a live vsock socket: the error names file, line, key" \
	grep -q "m.ini:9: \[device.v\] uds_path: \"$tmp/rel/v.sock\" is in use by another process" "$tmp/rel3.out"
check "the live socket is left alone" [ -S "$tmp/rel/v.sock" ]
cd - >/dev/null
kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null

echo "$((n - fail)) passed, $fail failed"
[ $fail = 0 ]
