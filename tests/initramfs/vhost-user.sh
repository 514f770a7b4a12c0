#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Guest side of the vhost-user tests (tests/e2e/vhost_user_qemu.sh) and of
# bench/vhost-user-blk.  Installed as /etc/smvmm-init.d/50-vhost-user by
# those scripts; /init runs it after its own checks (the virtio-rng one
# covers vhost-user-rng).  Does nothing unless the kernel command line has
# smvmm.vu=<mode>:
#
#   main   virtio-blk: mkfs.ext4 + a tree of files on the disk with serial
#          "vufs" (mounted with -o discard), fio --verify=crc32c random
#          writes on "vufio" then BLKDISCARD of its second half, the
#          read-only disk "vuro" refuses writes;  virtio-vsock: 64 MiB (or
#          smvmm.vu_mib) each way with checksums and many short connections
#          both ways through the host's Firecracker-style Unix sockets
#   again  after the front-end reconnected: "vufs" survives a driver
#          unbind/bind (device reset and restart), its tree still verifies,
#          the read-only disk reads the same, one vsock echo
#   bench  fio jobs on the disk with serial "bench" (one JSON line each)
#
# Tools come from the read-only disk with serial "tools" (QEMU's own
# virtio-blk): Debian's fio, socat and mkfs.ext4 with the libraries ldd
# names, run through their dynamic loader.  Output lines for the host start
# with "smvmm-vu: "; a failure exits non-zero (/init then prints FAIL).
export PATH=/bin

mode=
mib=64
conns=40
for w in $(cat /proc/cmdline); do
	case "$w" in
	smvmm.vu=*) mode=${w#smvmm.vu=} ;;
	smvmm.vu_mib=*) mib=${w#smvmm.vu_mib=} ;;
	smvmm.vu_conns=*) conns=${w#smvmm.vu_conns=} ;;
	esac
done
[ -n "$mode" ] || exit 0

say() { echo "smvmm-vu: $*"; }
die() { echo "smvmm-vu: FAIL $*"; exit 1; }

# The block device (vdX) whose GET_ID serial is $1.
disk() {
	for d in /sys/block/vd*; do
		[ -e "$d/serial" ] || continue
		[ "$(cat "$d/serial")" = "$1" ] && { basename "$d"; return 0; }
	done
	return 1
}

tools() {
	t=$(disk tools) || die "no tools disk (serial 'tools')"
	mkdir -p /tools
	mount -t ext4 -o ro "/dev/$t" /tools || die "mount tools disk /dev/$t"
}
T() {
	/tools/ld.so --library-path /tools/lib "/tools/bin/$@"
}
sha() { sha256sum | cut -c1-64; }

blk_main() {
	fs=$(disk vufs) || die "no disk with serial vufs"
	fio=$(disk vufio) || die "no disk with serial vufio"
	ro=$(disk vuro) || die "no disk with serial vuro"
	say "disks fs=$fs fio=$fio ro=$ro"
	# blk-mq hardware contexts: one per virtqueue (VIRTIO_BLK_F_MQ)
	say "queues fs=$(ls /sys/block/$fs/mq | wc -l)"

	# mkfs discards the whole disk first (BLKDISCARD), then a tree of
	# files, sync, unmount: the host runs e2fsck -fn and compares.
	T mkfs.ext4 -q -F -L vufs "/dev/$fs" || die "mkfs.ext4 /dev/$fs"
	mkdir -p /mnt/fs
	mount -t ext4 -o discard "/dev/$fs" /mnt/fs || die "mount /dev/$fs"
	for d in a b c/deep/er; do
		mkdir -p "/mnt/fs/$d"
		i=1
		while [ $i -le 12 ]; do
			dd if=/dev/urandom of="/mnt/fs/$d/f$i" bs=1k \
				count=$(( (i * 37) % 200 + 1 )) 2>/dev/null ||
				die "write /mnt/fs/$d/f$i"
			i=$((i + 1))
		done
	done
	dd if=/dev/urandom of=/mnt/fs/big bs=1M count=8 2>/dev/null || die "write big"
	echo "hello from the guest" >/mnt/fs/hello.txt
	# a file written and deleted: -o discard trims its blocks
	dd if=/dev/urandom of=/mnt/fs/gone bs=1M count=4 2>/dev/null
	sync
	rm /mnt/fs/gone
	(cd /mnt/fs && find . -type f ! -name manifest | sort | xargs sha256sum) \
		>/tmp/manifest || die "manifest"
	cp /tmp/manifest /mnt/fs/manifest
	sync
	umount /mnt/fs || die "umount"
	say "manifest $(sha </tmp/manifest) files $(wc -l </tmp/manifest)"

	# fio: random writes with crc32c verification, several in flight.
	T fio --name=verify --filename="/dev/$fio" --direct=1 \
		--ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k \
		--size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--randrepeat=0 --output-format=terse >/tmp/fio.out 2>&1 ||
		{ cat /tmp/fio.out; die "fio verify on /dev/$fio"; }
	say "fio verify ok"
	# BLKDISCARD of the second half: reads back as zeros here, and the
	# host sees the hole in its file.
	blkdiscard -o $((16 << 20)) -l $((16 << 20)) "/dev/$fio" ||
		die "blkdiscard /dev/$fio"
	z=$(head -c $((16 << 20)) /dev/zero | sha)
	got=$(dd if="/dev/$fio" bs=1M skip=16 count=16 iflag=direct 2>/dev/null | sha)
	[ "$got" = "$z" ] || die "discarded range does not read as zeros"
	say "discard ok"

	# Read-only: the kernel sees VIRTIO_BLK_F_RO, writes fail, reads work.
	[ "$(cat /sys/block/$ro/ro)" = 1 ] || die "/dev/$ro is not read-only"
	if dd if=/dev/zero of="/dev/$ro" bs=4k count=1 oflag=direct 2>/dev/null; then
		die "a write to the read-only /dev/$ro succeeded"
	fi
	say "ro $(sha <"/dev/$ro")"
}

# Firecracker's hybrid vsock: the host is CID 2; a guest connect to port P
# reaches the host socket <uds_path>_P.
vsock_main() {
	head -c $((mib << 20)) /dev/urandom >/tmp/g2h
	say "g2h $(sha </tmp/g2h)"
	T socat -u OPEN:/tmp/g2h VSOCK-CONNECT:2:5000 || die "socat g2h"
	rm -f /tmp/g2h
	say "g2h sent"

	# host -> guest: listen, tell the host, receive until EOF.
	T socat -u VSOCK-LISTEN:6000 CREATE:/tmp/h2g &
	pid=$!
	sleep 1
	say "listening 6000"
	wait $pid || die "socat h2g"
	say "h2g $(sha </tmp/h2g) bytes $(wc -c </tmp/h2g)"
	rm -f /tmp/h2g

	# many short connections guest -> host (an echo server on 5001)
	i=1
	while [ $i -le "$conns" ]; do
		r=$(echo "ping $i" | T socat -t 10 - VSOCK-CONNECT:2:5001) ||
			die "connection $i to the host echo"
		[ "$r" = "ping $i" ] || die "echo $i: got '$r'"
		i=$((i + 1))
	done
	say "short g2h $conns ok"

	# many short connections host -> guest: an echo server here; the
	# host connects to port 6002 when it is done.
	# -t 60: socat's default 0.5 s after EOF can lose the echo under load.
	T socat -t 60 VSOCK-LISTEN:6001,fork,reuseaddr EXEC:cat &
	echo_pid=$!
	sleep 1
	say "echo 6001"
	r=$(T socat -u VSOCK-LISTEN:6002 -) || die "waiting for the host"
	kill $echo_pid 2>/dev/null
	say "short h2g $r"
}

blk_again() {
	fs=$(disk vufs) || die "no disk with serial vufs"
	# Driver unbind + bind: the device is reset (the front-end stops the
	# rings with GET_VRING_BASE) and set up again on the same back-end.
	v=$(basename "$(readlink -f "/sys/block/$fs/device")")
	echo "$v" >/sys/bus/virtio/drivers/virtio_blk/unbind || die "unbind $v"
	echo "$v" >/sys/bus/virtio/drivers/virtio_blk/bind || die "bind $v"
	n=0
	until fs=$(disk vufs); do
		n=$((n + 1))
		[ $n -lt 50 ] || die "vufs did not come back after rebinding $v"
		usleep 100000
	done
	say "again rebind ok $v"
	ro=$(disk vuro) || die "no disk with serial vuro"
	mkdir -p /mnt/fs
	mount -t ext4 -o ro "/dev/$fs" /mnt/fs || die "mount /dev/$fs"
	(cd /mnt/fs && sha256sum -c -s manifest) || die "manifest does not verify"
	say "again manifest ok $(wc -l </mnt/fs/manifest)"
	umount /mnt/fs
	say "ro $(sha <"/dev/$ro")"
	r=$(echo "again" | T socat -t 10 - VSOCK-CONNECT:2:5001) ||
		die "vsock echo after reconnect"
	[ "$r" = again ] || die "vsock echo after reconnect: '$r'"
	say "again vsock ok"
}

# bench: the same fio jobs for whichever device carries serial "bench".
bench() {
	b=$(disk bench) || die "no disk with serial bench"
	rt=${BENCH_RUNTIME:-}
	for w in $(cat /proc/cmdline); do
		case "$w" in smvmm.vu_runtime=*) rt=${w#smvmm.vu_runtime=} ;; esac
	done
	rt=${rt:-5}
	for job in randread:4k:16 randwrite:4k:16 read:1M:4 write:1M:4; do
		rw=${job%%:*}
		bs=${job#*:}; bs=${bs%%:*}
		qd=${job##*:}
		T fio --name="$rw-$bs" --filename="/dev/$b" --direct=1 \
			--ioengine=libaio --iodepth="$qd" --rw="$rw" --bs="$bs" \
			--size=64M --time_based --runtime="$rt" --ramp_time=1 \
			--output-format=terse --terse-version=3 >/tmp/b.out 2>&1 ||
			{ cat /tmp/b.out; die "fio $rw"; }
		# terse v3: field 7 read IOPS... use read/write kB/s and IOPS
		say "bench $rw $bs qd$qd $(head -n1 /tmp/b.out | awk -F';' '{print "rbw=" $7 " riops=" $8 " wbw=" $48 " wiops=" $49}')"
	done
}

tools
case "$mode" in
main) blk_main; vsock_main ;;
again) blk_again ;;
bench) bench ;;
*) die "unknown smvmm.vu=$mode" ;;
esac
say "done $mode"
