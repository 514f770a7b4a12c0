#!/usr/bin/env bash
# label: kvm-linux
# SPDX-License-Identifier: MIT
#
# The default Linux machine (configs/debian.ini: Debian's stock kernel, the
# test initramfs, one virtio-rng), with its kernel and initrd paths made
# absolute, booted twice:
#
#   plain   no jail, as an unprivileged user in group kvm (nobody + kvm,
#           /dev/kvm root:kvm 0660 as Debian's udev makes it): Linux boots to
#           "smvmm-init: ok" and powers off, exit 0; /proc shows uid 65534
#           and the test's own namespaces;
#   jailed  started as root with --uid nobody --gid nogroup --chroot DIR (the
#           command-line jail) and a [sandbox] cgroup with memory_max,
#           pids_max, cpu_max (the INI's): while the guest waits (an
#           /etc/smvmm-init.d script reads a line from the console after
#           the built-in checks), /proc shows the dropped ids, no
#           capabilities, NoNewPrivs on every thread, the five namespaces,
#           PID 1, the jail's root, the cgroup with its limits and the
#           guest's memory charged to it; then the host sends the line and
#           Linux powers off: exit 0, "smvmm-init: ok".
#
# Runs natively on vmx/svm, elsewhere inside the nested-KVM rig (the
# initramfs and a readable copy of the kernel are prepared before).
# Needs root (CI runs as root).
set -uo pipefail

SRC=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SMVMM_BUILD_DIR:-$SRC/build}
TIMEOUT=${JAIL_LINUX_TIMEOUT:-300}
. "$SRC/tests/e2e/lib/jail.sh"
if [ "$(id -u)" != 0 ]; then echo "SKIP: the jail is set up as root"; exit 77; fi
jail_kvm_group || exit 1
KCACHE=$("$SRC/scripts/fetch-guest-kernel" --print-dir) ||
	{ echo "FAIL: scripts/fetch-guest-kernel could not provide the kernel"; exit 1; }
if [ -z "${KVM_RIG_PREP:-}" ]; then
	KVM_RIG_PREP=$(mktemp -d "${TMPDIR:-/tmp}/jail_linux.prep.XXXXXX")
	export KVM_RIG_PREP
	trap 'rm -rf "$KVM_RIG_PREP"' EXIT
	chmod 755 "$KVM_RIG_PREP"
	"$SRC/scripts/mkinitramfs" "$KVM_RIG_PREP/initrd.gz" --kernel-cache "$KCACHE" \
		--extra "$SRC/tests/initramfs/wait-host.sh=/etc/smvmm-init.d/50-wait-host" 2>/dev/null ||
		{ echo "FAIL: mkinitramfs"; exit 1; }
	# the cache is under root's home: nobody reads this copy
	cp "$KCACHE/vmlinux" "$KVM_RIG_PREP/vmlinux"
	chmod 644 "$KVM_RIG_PREP/initrd.gz" "$KVM_RIG_PREP/vmlinux"
fi
. "$(dirname "$0")/lib/kvm-rig.sh" "$@"

[ -x "$BUILD/smvmm" ] || { echo "FAIL: $BUILD/smvmm missing"; exit 1; }
command -v setpriv >/dev/null || { echo "FAIL: setpriv not installed (util-linux)"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jail_linux.XXXXXX")
chmod 755 "$WORK"
CG=$(jail_cgroup_root)
CGDIR=${CG:+$CG/smvmm-jail-linux.$$}
SUP=
cleanup() {
	if [ -n "$SUP" ]; then
		pkill -KILL -P "$SUP" 2>/dev/null
		kill -KILL "$SUP" 2>/dev/null
		wait "$SUP" 2>/dev/null
	fi
	[ -n "$CGDIR" ] && [ -d "$CGDIR" ] && rmdir "$CGDIR"
	rm -rf "$WORK" "${KVM_RIG_PREP_OWNED:-}"
}
trap cleanup EXIT
[ -n "${SMVMM_IN_L1:-}" ] || KVM_RIG_PREP_OWNED=$KVM_RIG_PREP
fail=0 n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); echo "not ok $n - $*"; fail=$((fail + 1)); }
show() { # NAME
	echo "#   ---- $1: console (last 20 lines) ----"
	tr -d '\r' <"$WORK/$1.out" | tail -n 20 | sed 's/^/#   /'
	echo "#   ---- $1: stderr ----"
	tail -n 10 "$WORK/$1.err" | sed 's/^/#   /'
}
JAIL_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # see jail_kvm.sh

# configs/debian.ini, its paths made absolute (the kernel: the readable copy)
sed -e "s|^kernel *= .*|kernel  = $KVM_RIG_PREP/vmlinux|" \
	-e "s|^initrd *= .*|initrd  = $KVM_RIG_PREP/initrd.gz|" \
	"$SRC/configs/debian.ini" >"$WORK/debian.ini"
[ "$(grep -c "^\(kernel\|initrd\)  = $KVM_RIG_PREP/" "$WORK/debian.ini")" = 2 ] ||
	{ echo "FAIL: configs/debian.ini has no kernel/initrd lines to rewrite"; exit 1; }
chmod 644 "$WORK/debian.ini"

# boot NAME PID-VAR RUNNER... -- ARGS: start smvmm, its console input a FIFO
start() {
	local name=$1
	shift
	mkfifo "$WORK/$name.in"
	exec 3<>"$WORK/$name.in"
	"$@" <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	SUP=$!
}
# wait for the guest to stop at the wait-host script
wait_guest() { # NAME
	local t0
	t0=$(date +%s)
	while [ $(($(date +%s) - t0)) -lt "$TIMEOUT" ]; do
		grep -q '^smvmm-init: waiting for the host' "$WORK/$1.out" && return 0
		kill -0 "$SUP" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
finish() { # NAME: send the line, wait for smvmm; sets rc
	echo "go on" >&3
	local t0
	t0=$(date +%s)
	while kill -0 "$SUP" 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$TIMEOUT" ]; do sleep 0.2; done
	pkill -KILL -P "$SUP" 2>/dev/null
	kill -KILL "$SUP" 2>/dev/null
	wait "$SUP"
	rc=$?
	SUP=
	exec 3>&-
}
booted() { # NAME: the guest's own checks passed and it powered off
	local out
	out=$(tr -d '\r' <"$WORK/$1.out")
	[ "$rc" = 0 ] && grep -q "^smvmm-init: the host said 'go on'" <<<"$out" &&
		grep -q '^smvmm-init: ok' <<<"$out" &&
		grep -q '^smvmm-init: hwrng ' <<<"$out" &&
		grep -q 'guest powered off (ACPI S5)' "$WORK/$1.err"
}

# ---- plain: unprivileged, no jail ------------------------------------------
mkdir "$WORK/kvmdev"
t0=$(date +%s)
start plain as_kvm_user "$WORK/kvmdev" "$BUILD/smvmm" -c "$WORK/debian.ini"
if wait_guest plain; then
	# smvmm: $SUP, or below it (the subshell running as_kvm_user)
	P=$SUP
	for _ in 1 2 3; do
		[ "$(cat "/proc/$P/comm" 2>/dev/null)" = smvmm ] && break
		P=$(pgrep -P "$P" | head -n 1)
	done
	v=$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$P/status" | tr -s ' \t' ' ')
	g=$(sed -n 's/^Groups:[[:space:]]*//p' "/proc/$P/status" | tr -s ' \t' ' ' | sed 's/ $//')
	if [ "$v" = "65534 65534 65534 65534" ] && [ "$g" = "$(getent group kvm | cut -d: -f3)" ] &&
		[ "$(readlink "/proc/$P/ns/net")" = "$(readlink /proc/$$/ns/net)" ]; then
		ok "plain: smvmm runs as nobody with group kvm only, no jail (the test's net namespace)"
	else
		bad "plain: pid '$P' Uid '$v' Groups '$g'"
	fi
	finish plain
	if booted plain; then ok "plain: Linux booted as an unprivileged user in group kvm: smvmm-init: ok, hwrng, power-off, exit 0 ($(($(date +%s) - t0)) s)"
	else bad "plain: exit $rc"; show plain; fi
else
	finish plain
	bad "plain: the guest did not reach the wait (exit $rc)"
	show plain
fi

# ---- jailed: --uid/--gid/--chroot + [sandbox] cgroup ----------------------
JAIL=$WORK/jail
mkdir "$JAIL"
echo inside >"$JAIL/marker"
cp "$WORK/debian.ini" "$WORK/jailed.ini"
limits=()
cgrel=
if [ -n "$CG" ]; then
	cgrel=${CGDIR#"$CG"}
	ctl=$(cat "$CG/cgroup.controllers")
	for c in memory pids cpu; do
		case " $ctl " in *" $c "*) ;; *) bad "cgroup: no $c controller at $CG ($ctl)" ;; esac
	done
	limits=("memory_max = 512M" "pids_max = 64" "cpu_max = 100000 100000")
	printf '\n[sandbox]\ncgroup = %s\n' "$CGDIR" >>"$WORK/jailed.ini"
	printf '%s\n' "${limits[@]}" >>"$WORK/jailed.ini"
else
	bad "no cgroup2 file system (the rig mounts one in L1)"
fi
t0=$(date +%s)
start jailed env ASAN_OPTIONS="$JAIL_ASAN" "$BUILD/smvmm" -c "$WORK/jailed.ini" \
	--uid nobody --gid nogroup --chroot "$JAIL"
if wait_guest jailed; then
	CHILD=$(jail_child "$SUP")
	jail_proc_checks "$CHILD" "$SUP" 65534 65534 "$JAIL" "$cgrel"
	if [ -n "$CGDIR" ]; then
		v="$(cat "$CGDIR/memory.max")/$(cat "$CGDIR/pids.max")/$(cat "$CGDIR/cpu.max")"
		if [ "$v" = "$((512 << 20))/64/100000 100000" ]; then ok "cgroup: memory.max, pids.max, cpu.max as set ($v)"
		else bad "cgroup: limits '$v'"; fi
		v=$(cat "$CGDIR/memory.current")
		# the guest booted Linux: tens of MiB of its RAM are in use
		if [ "$v" -ge $((32 << 20)) ]; then ok "cgroup: memory.current $((v >> 20)) MiB: the guest's memory is charged to the jail's cgroup"
		else bad "cgroup: memory.current $v"; fi
	fi
	finish jailed
	if booted jailed; then ok "jailed: Linux booted in the jail: smvmm-init: ok, hwrng, power-off, exit 0 ($(($(date +%s) - t0)) s)"
	else bad "jailed: exit $rc"; show jailed; fi
	if [ -n "$CGDIR" ]; then
		if grep -q '^oom_kill 0$' "$CGDIR/memory.events"; then ok "cgroup: no OOM kill"
		else bad "cgroup: memory.events: $(tr '\n' ' ' <"$CGDIR/memory.events")"; fi
	fi
else
	finish jailed
	bad "jailed: the guest did not reach the wait (exit $rc)"
	show jailed
fi

echo "1..$n"
[ $fail = 0 ]
