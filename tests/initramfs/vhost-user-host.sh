# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Host-side helpers shared by tests/e2e/vhost_user_qemu.sh and
# bench/vhost-user-blk (sourced, not run).  Needs SRC (the source tree).
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
