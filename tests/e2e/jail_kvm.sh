#!/usr/bin/env bash
# label: kvm
# The jail ([sandbox], docs/sandbox.md) with the probe guest, checked from
# outside the process:
#   1. a jailed VM (started as root; user 64321, group 64321, no passwd
#      entries; chroot; all five namespaces; a cgroup, with limits where the
#      hierarchy has the controllers) with virtio-rng, virtio-blk (its
#      workers start before the jail) and virtio-vsock, whose
#      guest-initiated connection to "<uds_path>_5000" is made at run time,
#      inside the jail: while the probe spins, /proc shows the ids, no
#      capabilities, NoNewPrivs on every thread, the new namespaces, PID 1,
#      the root (a read-only tmpfs with only the jail directory), the
#      cgroup, and the supervisor dropped too; the guest's checks pass;
#      SIGTERM to the supervisor ends it with 143;
#   2. a directory fd passed in by the caller: refused before the guest
#      runs (exit 1, the key and the fd named);
#   3. no jail, as an unprivileged user in group kvm (nobody + kvm, /dev/kvm
#      root:kvm 0660 as Debian's udev makes it): the probe passes, exit 0;
#      the same user without group kvm: "/dev/kvm: Permission denied";
#   4. fsize_limit = 1K with the serial console to a file, unprivileged: the
#      file stops at 1024 bytes and smvmm still exits 0 (EFBIG, not
#      SIGXFSZ).
# Runs natively on vmx/svm, elsewhere inside the nested-KVM rig.  Needs
# root (CI runs as root), setpriv/unshare (util-linux), socat.
set -u
B=${SMVMM_BUILD_DIR:?}
S=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$S/tests/e2e/lib/jail.sh"
if [ "$(id -u)" != 0 ]; then echo "SKIP: the jail is set up as root"; exit 77; fi
# The rig shares this machine's root read-only: the group must exist first.
jail_kvm_group || exit 1
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"
command -v socat >/dev/null || { echo "FAIL: socat not installed"; exit 1; }
command -v setpriv >/dev/null || { echo "FAIL: setpriv not installed (util-linux)"; exit 1; }
[ -f "$B/probe.elf" ] || { echo "FAIL: $B/probe.elf missing"; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
CG=$(jail_cgroup_root)
CGDIR=${CG:+$CG/smvmm-jail-kvm.$$}
cleanup() {
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	[ -n "$CGDIR" ] && [ -d "$CGDIR" ] && rmdir "$CGDIR"
	rm -rf "$tmp"
}
trap cleanup EXIT
fail=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); echo "not ok $n - $*"; fail=$((fail + 1)); }
# An ASan build: LeakSanitizer cannot work in a jail (no /proc to list the
# threads, and a process that changed its uid cannot be ptraced by its own
# helper); leaks are checked by every run without a jail.
JAIL_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

# ---- 1. a jailed VM -------------------------------------------------------
JAIL=$tmp/jail
mkdir "$JAIL"
chown 64321:64321 "$JAIL" # the VMM removes its socket at exit
echo "inside" >"$JAIL/marker"
SECTORS=256 SEED=4660
awk -v seed=$SEED -v n=$SECTORS 'BEGIN { for (s = 0; s < n; s++) for (r = 0; r < 32; r++)
	printf "%06x:%05x:%02x\n", seed, s, r }' >"$tmp/disk.img"
limits=()
cgrel=
if [ -n "$CG" ]; then
	cgrel=${CGDIR#"$CG"}
	ctl=$(cat "$CG/cgroup.controllers")
	case " $ctl " in *" memory "*) limits+=("memory_max = 256M") ;; esac
	case " $ctl " in *" pids "*) limits+=("pids_max = 32") ;; esac
	case " $ctl " in *" cpu "*) limits+=("cpu_max = 100000 100000") ;; esac
	echo "# cgroup2 at $CG (controllers: $ctl); limits: ${limits[*]:-none available}"
else
	echo "# no cgroup2 on this machine: the cgroup checks are left out"
fi
cat >"$tmp/jail.ini" <<EOF
[machine]
vcpus = 2
memory = 64M
[boot]
kernel = $B/probe.elf
cmdline = console=ttyS0 probe.vcpus=2 probe.rng=1 probe.blk=1 probe.blk_sectors=$SECTORS probe.blk_serial=disk-0 probe.blk_seed=0x$(printf %x $SEED) probe.vsock=1 probe.vsock_cid=3 probe.vsock_port=5000 probe.vsock_bytes=65536 probe.timeout_ms=30000 probe.spin=1
[device.rng0]
type = virtio-rng
[device.disk0]
type = virtio-blk
path = $tmp/disk.img
serial = disk-0
[device.vsock0]
type = virtio-vsock
guest_cid = 3
uds_path = $JAIL/v.sock
[sandbox]
user = 64321
group = 64321
chroot = $JAIL
${CGDIR:+cgroup = $CGDIR}
$(printf '%s\n' ${limits[@]+"${limits[@]}"})
EOF
# the guest-initiated echo: the jailed VMM (uid 64321) connects to it
(umask 0; exec socat -t 60 UNIX-LISTEN:"$JAIL/v.sock_5000",fork EXEC:cat) 2>"$tmp/socat.err" &
pids+=($!)
for _ in $(seq 100); do [ -S "$JAIL/v.sock_5000" ] && break; sleep 0.1; done

ASAN_OPTIONS=$JAIL_ASAN "$B/smvmm" -c "$tmp/jail.ini" </dev/null >"$tmp/jail.out" 2>"$tmp/jail.err" &
SUP=$!
pids+=($SUP)
for _ in $(seq 1200); do
	grep -q '^# probe: spinning' "$tmp/jail.out" && break
	kill -0 $SUP 2>/dev/null || break
	sleep 0.1
done
if grep -q '^# probe: spinning' "$tmp/jail.out"; then
	bads=$(grep -c '^not ok' "$tmp/jail.out")
	if [ "$bads" = 0 ] && grep -q '^ok .*guest-initiated echo of 65536 bytes each way, checksums match' "$tmp/jail.out" &&
		[ "$(grep -c '^ok .*virtio-blk' "$tmp/jail.out")" -ge 5 ]; then
		ok "jailed probe: $(grep -c '^ok ' "$tmp/jail.out") TAP ok: rng, virtio-blk, and vsock's guest-initiated echo through $JAIL/v.sock_5000 from inside the jail"
	else
		bad "jailed probe: $bads not ok"; grep -E '^not ok|vsock|blk' "$tmp/jail.out" | sed 's/^/#   /'
	fi
	CHILD=$(jail_child $SUP)
	jail_proc_checks "$CHILD" $SUP 64321 64321 "$JAIL" "$cgrel"
	if [ -n "$CGDIR" ]; then
		for kv in ${limits[@]+"${limits[@]}"}; do
			k=${kv%% =*} v=${kv#*= }
			f=$(echo "$k" | sed 's/_max$/.max/')
			case $k in memory_max) v=$((256 << 20)) ;; esac
			if [ "$(cat "$CGDIR/$f")" = "$v" ]; then ok "cgroup: $f = $v"
			else bad "cgroup: $f is '$(cat "$CGDIR/$f")', expected '$v'"; fi
		done
		if [ -f "$CGDIR/pids.current" ]; then
			v=$(cat "$CGDIR/pids.current")
			# main, I/O thread, 2 vCPUs, 4 virtio-blk workers
			if [ "$v" -ge 8 ]; then ok "cgroup: pids.current $v (every thread of the VMM is in it)"
			else bad "cgroup: pids.current $v, expected >= 8"; fi
		fi
		if [ -f "$CGDIR/memory.current" ]; then
			v=$(cat "$CGDIR/memory.current")
			if [ "$v" -ge $((1 << 20)) ]; then ok "cgroup: memory.current $((v >> 10)) KiB charged to it"
			else bad "cgroup: memory.current $v"; fi
		fi
	fi
	kill -TERM $SUP
	wait $SUP
	rc=$?
	if [ $rc = 143 ] && grep -q 'stopped by signal Terminated' "$tmp/jail.err"; then
		ok "SIGTERM to the supervisor: forwarded, the VMM stopped cleanly, exit 143"
	else
		bad "SIGTERM: exit $rc: $(cat "$tmp/jail.err")"
	fi
	if [ -e "$JAIL/v.sock" ]; then bad "uds_path left behind"; else ok "the VMM removed its uds_path at exit, from inside the jail"; fi
	[ -n "$CGDIR" ] && { [ -z "$(cat "$CGDIR/cgroup.procs")" ] && ok "cgroup: empty after the exit" || bad "cgroup: still has $(cat "$CGDIR/cgroup.procs")"; }
else
	wait $SUP
	bad "jailed probe did not spin (exit $?)"
	sed 's/^/#   /' "$tmp/jail.out" "$tmp/jail.err" | tail -n 30
fi

# ---- 2. an inherited directory fd ----------------------------------------
sed -i '/^cgroup\|_max = /d' "$tmp/jail.ini"
ASAN_OPTIONS=$JAIL_ASAN timeout 120 "$B/smvmm" -c "$tmp/jail.ini" </dev/null >"$tmp/dirfd.out" 2>"$tmp/dirfd.err" 9</
rc=$?
if [ $rc = 1 ] && ! grep -q 'probe' "$tmp/dirfd.out" &&
	grep -q "^smvmm: $tmp/jail.ini:[0-9]*: \[sandbox\] chroot: fd 9 is an open directory ([^)]*), which would lead out of the jail" "$tmp/dirfd.err"; then
	ok "a directory fd passed in: refused before the guest ran ($(head -c 110 "$tmp/dirfd.err")...)"
else
	bad "directory fd: exit $rc, $(grep -c . "$tmp/dirfd.out") output lines: $(cat "$tmp/dirfd.err")"
fi

# ---- 3. no jail, unprivileged, group kvm ---------------------------------
mkdir "$tmp/kvmdev" "$tmp/out"
chown 65534:65534 "$tmp/out"
cat >"$tmp/plain.ini" <<EOF
[machine]
memory = 64M
[boot]
kernel = $B/probe.elf
cmdline = console=ttyS0 probe.rng=1
[device.rng0]
type = virtio-rng
EOF
as_kvm_user "$tmp/kvmdev" timeout 120 "$B/smvmm" -c "$tmp/plain.ini" </dev/null >"$tmp/plain.out" 2>"$tmp/plain.err"
rc=$?
if [ $rc = 0 ] && grep -q '^1\.\.' "$tmp/plain.out" && ! grep -q '^not ok' "$tmp/plain.out"; then
	ok "no jail: nobody in group kvm runs the probe to its power-off ($(grep -c '^ok' "$tmp/plain.out") TAP ok)"
else
	bad "no jail, nobody + kvm: exit $rc"; sed 's/^/#   /' "$tmp/plain.err" | tail -n 5
fi
as_nokvm_user "$B/smvmm" -c "$tmp/plain.ini" </dev/null >"$tmp/nokvm.out" 2>"$tmp/nokvm.err"
rc=$?
if [ $rc = 1 ] && grep -q '/dev/kvm: Permission denied (is this user in the kvm group?)' "$tmp/nokvm.err"; then
	ok "without group kvm: exit 1, /dev/kvm: Permission denied (is this user in the kvm group?)"
else
	bad "nobody without kvm: exit $rc: $(cat "$tmp/nokvm.err")"
fi

# ---- 4. fsize_limit, serial to a file --------------------------------------
full=$(wc -c <"$tmp/plain.out")
printf '[console]\nserial = %s\n[sandbox]\nfsize_limit = 1K\n' "$tmp/out/serial.log" >>"$tmp/plain.ini"
as_kvm_user "$tmp/kvmdev" timeout 120 "$B/smvmm" -c "$tmp/plain.ini" </dev/null >/dev/null 2>"$tmp/fsize.err"
rc=$?
size=$(stat -c %s "$tmp/out/serial.log" 2>/dev/null)
if [ $rc = 0 ] && [ "$full" -gt 1024 ] && [ "$size" = 1024 ]; then
	ok "fsize_limit = 1K: the serial log stops at 1024 of $full bytes, exit 0"
else
	bad "fsize_limit: exit $rc, serial log ${size:-missing} bytes of $full: $(cat "$tmp/fsize.err")"
fi

echo "1..$n"
[ $fail = 0 ]
