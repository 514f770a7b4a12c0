#!/usr/bin/env bash
# smvmm developer entry point: the README's two commands.
#   scripts/dev.sh run    install what is missing, build, boot Debian's stock
#                         kernel (configs/debian.ini: hello, its devices,
#                         power-off; a shell when on a terminal), natively
#                         where KVM can boot Linux, else through
#                         scripts/nested-kvm
#   scripts/dev.sh test   install what is missing, build, run every test
#                         (normal build, then unit + quick e2e tests
#                         under ASan+UBSan)
#   scripts/dev.sh deps|build|bench
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${SMVMM_BUILD:-$SRC/build}
BUILD_SAN=${SMVMM_BUILD_SAN:-$SRC/build-san}
JOBS=$(nproc)

PKGS=(build-essential cmake pkg-config libinih-dev libzstd-dev libarchive-dev
      check acpica-tools busybox-static qemu-system-x86 cpio xz-utils
      socat zstd kmod e2fsprogs fio clang libclang-rt-14-dev)

deps() {
	local missing=()
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	# scripts/fetch-guest-kernel needs the package lists even when every
	# package below is already installed.
	if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
		$sudo apt-get update -qq
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		echo "dev.sh: installing ${missing[*]}"
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
			--no-install-recommends "${missing[@]}" >/dev/null
	fi
}

build() {
	cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$BUILD" -j "$JOBS"
}

build_san() {
	cmake -S "$SRC" -B "$BUILD_SAN" -DCMAKE_BUILD_TYPE=Debug \
		-DSMVMM_SANITIZE=ON >/dev/null
	cmake --build "$BUILD_SAN" -j "$JOBS"
}

case "${1:-}" in
deps) deps ;;
build) deps; build ;;
run)
	deps
	build
	# configs/debian.ini names build/guest/{vmlinux,initramfs.cpio.gz}.
	"$SRC/scripts/mkinitramfs" "$SRC/build/guest/initramfs.cpio.gz" --link-kernel >/dev/null
	# On a terminal the guest's /init starts a shell before powering off.
	app=()
	if [ -t 0 ] && [ -t 1 ]; then app=(--append smvmm.shell=1); fi
	if why=$("$SRC/scripts/nested-kvm" --probe); then
		exec "$BUILD/smvmm" -c "$SRC/configs/debian.ini" ${app[@]+"${app[@]}"}
	fi
	echo "dev.sh: ${why#nested: }: booting configs/debian.ini inside the nested-KVM rig (scripts/nested-kvm: QEMU TCG, about 30 s)" >&2
	# L1's /tmp is its own: a tree under /tmp is shared in at its path.
	rw=()
	case "$SRC" in /tmp/*) rw=(--rw "$SRC") ;; esac
	exec "$SRC/scripts/nested-kvm" --quiet ${rw[@]+"${rw[@]}"} -- "$BUILD/smvmm" -c "$SRC/configs/debian.ini" ${app[@]+"${app[@]}"}
	;;
test)
	deps
	build
	rc=0
	# Every test, the kvm ones natively where KVM can boot Linux and through
	# the nested-KVM rig (scripts/nested-kvm) everywhere else; kvm-linux
	# (Debian's kernel under smvmm) among them.
	(cd "$BUILD" && ctest --output-on-failure -j "$JOBS") || rc=1
	build_san
	# Unit tests, and the quick smvmm end-to-end tests too (an ASan
	# report makes smvmm exit non-zero); QEMU-only tests and the slow
	# stock-kernel boot run once, above; the fuzzers carry their own
	# sanitizers (fuzz/run.sh).
	echo "dev.sh: unit and quick e2e tests under AddressSanitizer + UBSan"
	(cd "$BUILD_SAN" && ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j "$JOBS" -E '^qemu/|^fuzz/|^kvm-linux/') || rc=1
	exit $rc
	;;
bench)
	deps
	build
	shift
	for b in "${@:-startup}"; do bash "$SRC/bench/$b"; done
	;;
*)
	echo "usage: $0 run|test|deps|build|bench [names...]" >&2
	exit 2
	;;
esac
