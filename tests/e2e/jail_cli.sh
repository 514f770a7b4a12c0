#!/usr/bin/env bash
# label: cli
# The jail's refusals through the CLI, no hypervisor needed: each case is a
# real start (not --check) whose jail cannot be set up, and must end with
# exit 1, one "smvmm: <where>: <reason>" line naming the [sandbox] key (or
# --uid/--gid/--chroot) and the reason, and no guest output (the serial
# console is stdout: empty).  Cases: a missing chroot directory, an unknown
# user, a cgroup outside cgroup v2, a cgroup that cannot be written (a
# read-only cgroup2 mount in a private mount namespace: needs root), a jail
# started by a non-root user; and --check printing the sandbox plan without
# creating the cgroup.  (The jail itself: tests/e2e/jail_kvm.sh.)
set -u
B=${SMVMM_BUILD_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # readable by nobody (the non-root case)
fail=0; n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); echo "not ok $n - $1"; fail=$((fail + 1)); }
skip() { n=$((n + 1)); echo "ok $n - # SKIP $1"; }

mkdir "$tmp/jail"
machine() { # NAME [SANDBOX-LINES]: $tmp/NAME.ini, the probe with a jail
	cat >"$tmp/$1.ini" <<EOF
[machine]
memory = 64M
[boot]
kernel = $B/probe.elf
cmdline = console=ttyS0
[sandbox]
$2
EOF
	chmod 644 "$tmp/$1.ini"
}
# expect NAME REGEX [RUNNER...] -- SMVMM-ARGS...: exit 1, one matching line
expect() {
	local name=$1 re=$2 runner=()
	shift 2
	while [ "$1" != -- ]; do runner+=("$1"); shift; done
	shift
	${runner[@]+"${runner[@]}"} "$B/smvmm" "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err"
	local rc=$?
	local msg
	msg=$(head -1 "$tmp/$name.err")
	if [ $rc != 1 ]; then bad "$name: exit $rc, expected 1 ($msg)"
	elif [ -s "$tmp/$name.out" ]; then bad "$name: the guest started: $(head -c 200 "$tmp/$name.out")"
	elif [ "$(wc -l <"$tmp/$name.err")" != 1 ]; then bad "$name: expected one line, got: $(cat "$tmp/$name.err")"
	elif ! grep -qE -- "$re" "$tmp/$name.err"; then bad "$name: expected /$re/, got: $msg"
	else ok "$name: $msg"; fi
}

machine no-chroot "user = nobody
chroot = $tmp/nojail"
expect no-chroot "^smvmm: $tmp/no-chroot.ini:8: \[sandbox\] chroot: $tmp/nojail: No such file or directory \(the jail directory must exist\)$" \
	-- -c "$tmp/no-chroot.ini"
machine cli-no-chroot ""
expect cli-no-chroot "^smvmm: --chroot: $tmp/nojail: No such file or directory" \
	-- -c "$tmp/cli-no-chroot.ini" --uid nobody --chroot "$tmp/nojail"
machine unknown-user "user = smvmm-no-such-user
chroot = jail"
expect unknown-user "^smvmm: $tmp/unknown-user.ini:7: \[sandbox\] user: unknown user 'smvmm-no-such-user' \(not in the passwd database" \
	-- -c "$tmp/unknown-user.ini"
expect cli-unknown-user "^smvmm: --uid: unknown user 'smvmm-no-such-user'" \
	-- -c "$tmp/cli-no-chroot.ini" --uid smvmm-no-such-user
expect cli-root-group "^smvmm: --gid: 'root' is gid 0 \(root\)" \
	-- -c "$tmp/cli-no-chroot.ini" --uid nobody --gid root
machine no-user "chroot = jail"
expect no-user "^smvmm: $tmp/no-user.ini:7: \[sandbox\] chroot: needs a user to drop to \(\[sandbox\] user, or --uid\)" \
	-- -c "$tmp/no-user.ini"
machine not-cgroup2 "user = nobody
cgroup = $tmp/cg/vm1"
expect not-cgroup2 "^smvmm: $tmp/not-cgroup2.ini:8: \[sandbox\] cgroup: $tmp/cg/vm1 is not in a cgroup v2 hierarchy \($tmp is not a cgroup2 file system" \
	-- -c "$tmp/not-cgroup2.ini"

# A jail needs root to be set up; anyone else is told so before anything
# is opened.
if [ "$(id -u)" = 0 ]; then as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups); else as_nobody=(); fi
machine not-root "user = 65534
group = 65534"
expect not-root "^smvmm: $tmp/not-root.ini:7: \[sandbox\] user: the jail is set up as root, and smvmm runs as uid $( [ "$(id -u)" = 0 ] && echo 65534 || id -u)" \
	${as_nobody[@]+"${as_nobody[@]}"} -- -c "$tmp/not-root.ini"

# A cgroup that cannot be created: the cgroup2 hierarchy mounted read-only
# in a private mount namespace.
cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
if [ "$(id -u)" != 0 ]; then
	skip "read-only cgroup: needs root"
elif [ -z "$cg2" ] || ! unshare -m true 2>/dev/null; then
	skip "read-only cgroup: no cgroup2 mounted, or no mount namespaces here"
else
	mkdir "$tmp/cg"
	machine ro-cgroup "user = nobody
cgroup = $tmp/cg/smvmm-jail-cli"
	expect ro-cgroup "^smvmm: $tmp/ro-cgroup.ini:8: \[sandbox\] cgroup: cannot create the cgroup $tmp/cg/smvmm-jail-cli: Read-only file system$" \
		unshare -m sh -c 'mount -t cgroup2 -o ro none "$0" && exec "$@"' "$tmp/cg" -- -c "$tmp/ro-cgroup.ini"
	[ -d "$cg2/smvmm-jail-cli" ] && { bad "ro-cgroup: the cgroup was created anyway"; rmdir "$cg2/smvmm-jail-cli"; }
fi

# --check validates the jail and prints it; it sets nothing up.
if [ -n "$cg2" ]; then cgline="cgroup = $cg2/smvmm-jail-cli-check"; else cgline=; fi
machine plan "user = nobody
group = nogroup
chroot = jail
namespaces = mount,net
$cgline
fsize_limit = 1M"
"$B/smvmm" --check -c "$tmp/plan.ini" >"$tmp/plan.out" 2>&1; rc=$?
if [ $rc = 0 ] && grep -q '^  user:       uid 65534 gid 65534 (nobody:nogroup), no supplementary groups, no_new_privs$' "$tmp/plan.out" &&
	grep -q '^  namespaces: mount,net$' "$tmp/plan.out" &&
	grep -q "^  root:       pivot_root: an empty read-only tmpfs with $tmp/jail at its own path$" "$tmp/plan.out" &&
	grep -q '^  fsize:      RLIMIT_FSIZE 1048576 bytes$' "$tmp/plan.out"; then
	ok "--check prints the sandbox plan"
else
	bad "--check: exit $rc: $(sed -n '/^sandbox:/,$p' "$tmp/plan.out")"
fi
if [ -n "$cg2" ]; then
	if [ -e "$cg2/smvmm-jail-cli-check" ]; then bad "--check created the cgroup"; rmdir "$cg2/smvmm-jail-cli-check"
	else ok "--check did not create the cgroup"; fi
fi
"$B/smvmm" --help >"$tmp/help" 2>&1
if grep -q -- '--uid USER' "$tmp/help" && grep -q -- '--chroot DIR' "$tmp/help"; then ok "--help lists --uid/--gid/--chroot"
else bad "--help lacks the jail options"; fi

echo "1..$n"
[ $fail = 0 ]
