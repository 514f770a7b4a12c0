# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Host-side helpers shared by tests/e2e/vhost_user_qemu.sh (our plugins as
# vhost-user back-ends of QEMU), tests/e2e/linux_kvm.sh (the same plugins
# in-process under smvmm) and bench/vhost-user-blk (sourced, not run): one
# guest script (vhost-user.sh) and one set of host checks serve every VMM
# path.  Needs SRC (the source tree).
#
#   vu_tools_image OUT      ext4 image with Debian's fio, socat, mkfs.ext4
#                           and every library ldd names (flat in /lib), plus
#                           the dynamic loader as /ld.so; the guest mounts it
#                           read-only and runs /tools/ld.so --library-path
#                           /tools/lib /tools/bin/<tool>.  Built with
#                           mkfs.ext4 -d: no root, no loop device.
#   vu_initramfs OUT KCACHE scripts/mkinitramfs with the virtio, vsock and
#                           ext4 modules and tests/initramfs/vhost-user.sh as
#                           /etc/smvmm-init.d/50-vhost-user
#   vu_qemu_args MEM        the common QEMU arguments (microvm, TCG, shared
#                           memfd RAM of MEM, modern virtio-mmio) into the
#                           array VU_QEMU
#   vu_wait_log FILE RE S   wait up to S seconds for a line matching RE

VU_TOOLS="fio socat mkfs.ext4"
VU_MODULES="virtio_mmio virtio_rng virtio_blk vmw_vsock_virtio_transport ext4 crc32c_generic"

vu_tools_image() {
	local out=$1 stage t p lib kb
	stage=$(mktemp -d "${TMPDIR:-/tmp}/vu-tools.XXXXXX") || return 1
	mkdir -p "$stage/bin" "$stage/lib"
	for t in $VU_TOOLS; do
		p=$(command -v "$t") || { echo "vu_tools_image: $t not installed" >&2; rm -rf "$stage"; return 1; }
		cp -L "$p" "$stage/bin/$t"
		# "libX.so => /path (0x...)" and the loader's own line
		for lib in $(ldd "$p" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
			[ -e "$stage/lib/${lib##*/}" ] || cp -L "$lib" "$stage/lib/"
		done
	done
	cp -L /lib64/ld-linux-x86-64.so.2 "$stage/ld.so"
	kb=$(du -sk "$stage" | cut -f1)
	rm -f "$out"
	# -d populates from the directory; room for metadata and the journal
	mkfs.ext4 -q -F -L tools -O ^has_journal -d "$stage" "$out" \
		"$(( kb * 5 / 4 + 8192 ))k" >/dev/null || { rm -rf "$stage"; return 1; }
	rm -rf "$stage"
}

vu_initramfs() {
	local out=$1 kcache=$2
	"$SRC/scripts/mkinitramfs" "$out" --kernel-cache "$kcache" \
		--modules "$VU_MODULES" \
		--extra "$SRC/tests/initramfs/vhost-user.sh=/etc/smvmm-init.d/50-vhost-user"
}

vu_qemu_args() {
	local mem=$1
	VU_QEMU=(-M microvm,acpi=on,pit=on,rtc=on,auto-kernel-cmdline=off
		-accel tcg -m "$mem" -smp 1 -nodefaults -nographic -no-reboot
		-serial stdio -global virtio-mmio.force-legacy=false
		-object "memory-backend-memfd,id=mem,size=$mem,share=on"
		-machine memory-backend=mem)
}

vu_wait_log() {
	local file=$1 re=$2 secs=$3 i=0
	while [ $i -lt $((secs * 10)) ]; do
		grep -Eq "$re" "$file" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- host side of the device tests, shared by every VMM path ---------------
# The caller defines fail MSG (prints, exits 1) and console LOG (LOG.raw with
# CR LF -> LOG), and sets WORK, MIB (vsock MiB each way), CONNS (short
# connections each way), PIDS (an array; background helpers are added) and,
# before vu_vsock_host_side, VU_GUEST_PID (the VMM process) and LOG.

# vu_images DIR: the disks of the "main" mode: fs.img (64 MiB sparse, file
# system), fio.img (32 MiB sparse), ro.img (4 MiB random, read-only; its
# sha256 in VU_RO_SHA).
vu_images() {
	truncate -s 64M "$1/fs.img"
	truncate -s 32M "$1/fio.img"
	head -c $((4 << 20)) /dev/urandom >"$1/ro.img"
	VU_RO_SHA=$(sha256sum <"$1/ro.img" | cut -c1-64)
}

# vu_vsock_servers UDS: Firecracker-style host listeners UDS_5000 (a sink
# for guest->host data, into WORK/g2h.bin) and UDS_5001 (echo); the
# host->guest payload WORK/h2g.bin (sha256 in VU_H2G_SHA).
vu_vsock_servers() {
	local V=$1
	socat -u UNIX-LISTEN:"${V}_5000" CREATE:"$WORK/g2h.bin" 2>"$WORK/socat-5000.log" &
	PIDS+=($!)
	# -t 60: after the client's EOF, socat by default waits only 0.5 s for
	# cat's echo before it closes; a loaded host (the rig's one emulated
	# CPU) missed that and the guest read '' (seen in linux_kvm).
	socat -t 60 UNIX-LISTEN:"${V}_5001",fork EXEC:cat 2>/dev/null &
	PIDS+=($!)
	head -c $((MIB << 20)) /dev/urandom >"$WORK/h2g.bin"
	VU_H2G_SHA=$(sha256sum <"$WORK/h2g.bin" | cut -c1-64)
}

# vu_wait_guest RE SECS: wait until the console LOG has a line matching RE.
vu_wait_guest() { # RE SECS
	local i=0
	while [ $i -lt $(($2 * 5)) ]; do
		console "$LOG"
		grep -Eq "$1" "$LOG" && return 0
		grep -q 'smvmm-vu: FAIL\|smvmm-init: FAIL' "$LOG" && fail "guest failed"
		kill -0 "$VU_GUEST_PID" 2>/dev/null || { console "$LOG"; grep -Eq "$1" "$LOG" && return 0; fail "the VMM exited before '$1'"; }
		sleep 0.2
		i=$((i + 1))
	done
	fail "timeout waiting for '$1'"
}

# vu_vsock_host_side UDS: the host's half of the guest's vsock_main: send
# h2g.bin to the guest's port 6000, CONNS short connections to its echo
# server on 6001, then the count to 6002.
vu_vsock_host_side() {
	local V=$1 ok try i resp want

	# host -> guest: the guest listens on 6000; CONNECT it (Firecracker's
	# handshake: "CONNECT <port>\n", answer "OK <host port>\n").
	vu_wait_guest '^smvmm-vu: listening 6000' "$TIMEOUT"
	ok=0
	for try in 1 2 3 4 5; do
		(printf 'CONNECT 6000\n'; cat "$WORK/h2g.bin") |
			socat -t 60 - UNIX-CONNECT:"$V" >"$WORK/h2g.resp" 2>/dev/null
		grep -q '^OK [0-9]*$' "$WORK/h2g.resp" && { ok=1; break; }
		sleep 1
	done
	[ $ok = 1 ] || fail "host-initiated CONNECT 6000 was not accepted: $(head -c 100 "$WORK/h2g.resp")"

	# many short host -> guest connections to the guest's echo server
	vu_wait_guest '^smvmm-vu: echo 6001' 120
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
}

vu_val() { sed -n "s/^smvmm-vu: $2 //p" "$1" | head -n1; }

# vu_check_main LOG: the host's checks after a "main" boot: the file system
# is clean and holds the guest's tree, fio verified, the discard is a hole,
# the read-only disk is unchanged, vsock data arrived intact both ways.
vu_check_main() {
	local LOG=$1 man nfiles alloc
	val() { vu_val "$LOG" "$1"; }

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
	[ "$(sha256sum <"$WORK/ro.img" | cut -c1-64)" = "$VU_RO_SHA" ] || fail "the read-only image changed"
	[ "$(val ro)" = "$VU_RO_SHA" ] || fail "the guest read different bytes from the read-only disk"

	# virtio-vsock: both directions arrived intact.
	[ "$(val g2h | head -n1)" != "" ] || fail "no guest->host checksum"
	[ "$(sha256sum <"$WORK/g2h.bin" | cut -c1-64)" = "$(val g2h | head -n1)" ] ||
		fail "guest->host data differs ($(stat -c %s "$WORK/g2h.bin") bytes received)"
	[ "$(val h2g | cut -d' ' -f1)" = "$VU_H2G_SHA" ] ||
		fail "host->guest data differs (guest: $(val h2g))"
	grep -q "^smvmm-vu: short g2h $CONNS ok" "$LOG" || fail "short guest->host connections"
	grep -q "^smvmm-vu: short h2g $CONNS" "$LOG" || fail "short host->guest connections"
}

# vu_check_again LOG: the checks after an "again" boot on the same disks.
vu_check_again() {
	local LOG=$1
	val() { vu_val "$LOG" "$1"; }
	grep -q '^smvmm-vu: again rebind ok' "$LOG" || fail "boot 2: driver rebind"
	grep -q '^smvmm-vu: again manifest ok' "$LOG" || fail "boot 2: the tree does not verify"
	grep -q '^smvmm-vu: again vsock ok' "$LOG" || fail "boot 2: vsock"
	[ "$(val ro)" = "$VU_RO_SHA" ] || fail "boot 2: read-only disk"
	e2fsck -fn "$WORK/fs.img" >/dev/null 2>&1 || fail "boot 2: e2fsck after a read-only mount"
}
