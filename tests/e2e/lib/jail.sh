# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Helpers of the jail tests (jail_kvm.sh, jail_linux_kvm.sh): run smvmm as
# an unprivileged user in group kvm, and check a jailed smvmm from outside
# through /proc.  The caller defines ok/bad (TAP lines).
#
#   jail_kvm_group        before the rig: make sure group kvm exists (Debian's
#                         udev creates it; a machine without /dev/kvm may
#                         lack it); groupadd --system kvm as root
#   as_kvm_user DIR CMD.. CMD as nobody with the one supplementary group
#                         kvm, and /dev/kvm root:kvm 0660 in a private mount
#                         namespace (a node in a tmpfs at DIR, bound over
#                         /dev/kvm): Debian's permissions, without touching
#                         this machine's /dev/kvm
#   as_nokvm_user CMD..   CMD as nobody with no supplementary group
#   jail_cgroup_root      the cgroup2 mount (mounted at /sys/fs/cgroup inside
#                         L1 of the rig, which has none); empty if none
#   jail_child SUP        the jailed VMM: the supervisor's child
#   jail_proc_checks PID SUP UID GID JAIL CGREL
#                         the checks from outside: ids, no capabilities,
#                         NoNewPrivs for every thread, five new namespaces,
#                         PID 1 of its PID namespace, its root is a
#                         read-only tmpfs holding only JAIL, the cgroup
#                         (CGREL relative to the cgroup2 root; "" = none);
#                         and the supervisor SUP dropped to UID too

jail_kvm_group() {
	getent group kvm >/dev/null && return 0
	[ "$(id -u)" = 0 ] || { echo "FAIL: no group kvm, and not root to add it (groupadd --system kvm)"; return 1; }
	groupadd --system kvm || { echo "FAIL: groupadd --system kvm"; return 1; }
	echo "# added the system group kvm (Debian's udev normally does)"
}

as_kvm_user() { # DIR CMD...
	local dir=$1
	shift
	unshare -m bash -c '
		set -e
		dir=$1; shift
		mount -t tmpfs -o mode=0755 smvmm-kvm "$dir"
		mknod -m 0660 "$dir/kvm" c "0x$(stat -c %t /dev/kvm)" "0x$(stat -c %T /dev/kvm)"
		chgrp kvm "$dir/kvm"
		mount --bind "$dir/kvm" /dev/kvm
		exec setpriv --reuid=65534 --regid=65534 --groups=kvm -- "$@"
	' as_kvm_user "$dir" "$@"
}

as_nokvm_user() {
	setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
}

jail_cgroup_root() {
	local r
	r=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
	if [ -z "$r" ] && [ -n "${SMVMM_IN_L1:-}" ] && [ -d /sys/fs/cgroup ]; then
		mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null && r=/sys/fs/cgroup
	fi
	echo "$r"
}

jail_child() {
	pgrep -P "$1" | head -n 1
}

# _jail_status PID FIELD: the value of FIELD in /proc/PID/status
_jail_status() {
	sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | tr -s ' \t' ' ' | sed 's/ $//'
}

jail_proc_checks() { # PID SUP UID GID JAIL CGREL
	local pid=$1 sup=$2 uid=$3 gid=$4 jail=$5 cgrel=$6 t v bad_threads="" nt=0
	v=$(_jail_status "$pid" Uid)
	if [ "$v" = "$uid $uid $uid $uid" ]; then ok "jail: uid $uid (real, effective, saved, fs)"; else bad "jail: Uid: '$v', expected $uid x4"; fi
	v=$(_jail_status "$pid" Gid)
	if [ "$v" = "$gid $gid $gid $gid" ]; then ok "jail: gid $gid"; else bad "jail: Gid: '$v', expected $gid x4"; fi
	v=$(_jail_status "$pid" Groups)
	if [ -z "$v" ]; then ok "jail: no supplementary groups"; else bad "jail: Groups: '$v'"; fi
	v="$(_jail_status "$pid" CapInh)/$(_jail_status "$pid" CapPrm)/$(_jail_status "$pid" CapEff)/$(_jail_status "$pid" CapAmb)"
	if [ "$v" = "0000000000000000/0000000000000000/0000000000000000/0000000000000000" ]; then ok "jail: no capabilities"
	else bad "jail: capabilities inh/prm/eff/amb $v"; fi
	# every thread: vCPUs and the I/O thread started after the jail,
	# virtio-blk workers before it
	for t in /proc/"$pid"/task/*; do
		nt=$((nt + 1))
		[ "$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' "$t/status")" = 1 ] &&
			[ "$(sed -n 's/^Uid:[[:space:]]*//p' "$t/status" | tr -s ' \t' ' ')" = "$uid $uid $uid $uid" ] &&
			[ "$(readlink "$t/ns/net")" = "$(readlink "/proc/$pid/ns/net")" ] &&
			[ "$(stat -L -c %d:%i "$t/root")" = "$(stat -L -c %d:%i "/proc/$pid/root")" ] ||
			bad_threads+=" $(basename "$t")($(cat "$t/comm"))"
	done
	if [ -z "$bad_threads" ] && [ "$nt" -ge 2 ]; then ok "jail: all $nt threads: NoNewPrivs 1, uid $uid, the same net namespace and root"
	else bad "jail: threads not jailed:$bad_threads (of $nt)"; fi
	for t in mnt pid net ipc uts; do
		v=$(readlink "/proc/$pid/ns/$t")
		if [ -n "$v" ] && [ "$v" != "$(readlink /proc/$$/ns/$t)" ]; then ok "jail: new $t namespace ($v)"
		else bad "jail: $t namespace '$v' is the test's"; fi
	done
	v=$(_jail_status "$pid" NSpid)
	if [ "${v##* }" = 1 ]; then ok "jail: PID 1 of its PID namespace (NSpid $v)"; else bad "jail: NSpid '$v'"; fi
	# the root: a read-only tmpfs with only the jail directory's path
	if [ "$(stat -L -c %d:%i "/proc/$pid/root")" != "$(stat -c %d:%i /)" ] &&
		[ "$(stat -f -L -c %T "/proc/$pid/root/")" = tmpfs ] &&
		[ -f "/proc/$pid/root$jail/marker" ] && [ ! -e "/proc/$pid/root/etc" ] &&
		[ ! -e "/proc/$pid/root/proc/self" ] &&
		[ "$(ls -A "/proc/$pid/root/")" = "$(echo "$jail" | cut -d/ -f2)" ]; then
		ok "jail: its root is a tmpfs holding only $jail (marker seen; no /etc, no /proc)"
	else
		bad "jail: root: $(stat -f -L -c %T "/proc/$pid/root/") with '$(ls -A "/proc/$pid/root/" | tr '\n' ' ')'"
	fi
	if touch "/proc/$pid/root/smvmm-write-test" 2>/dev/null; then bad "jail: its root tmpfs is writable"
	else ok "jail: its root tmpfs is read-only"; fi
	if [ -n "$cgrel" ]; then
		if grep -qx "0::$cgrel" "/proc/$pid/cgroup"; then ok "jail: in the cgroup $cgrel"
		else bad "jail: cgroup '$(grep '^0::' "/proc/$pid/cgroup")', expected 0::$cgrel"; fi
	fi
	if [ -n "$sup" ]; then
		v="$(_jail_status "$sup" Uid)/$(_jail_status "$sup" NoNewPrivs)/$(_jail_status "$sup" CapEff)"
		if [ "$v" = "$uid $uid $uid $uid/1/0000000000000000" ]; then ok "jail: the supervisor dropped to uid $uid too"
		else bad "jail: supervisor Uid/NoNewPrivs/CapEff '$v'"; fi
	fi
}
