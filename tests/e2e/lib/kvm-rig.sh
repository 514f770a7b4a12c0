# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Sourced first by every test labelled `kvm` (tests/e2e/*_kvm.sh and the
# other kvm-labelled scripts):
#
#   . "$(dirname "$0")/lib/kvm-rig.sh" "$@"
#
# Where this machine's KVM can boot Linux (scripts/nested-kvm --probe: a
# /dev/kvm on a CPU with vmx/svm, not the kvm_pvm software KVM), the test
# goes on here.  Everywhere else the test re-runs itself, unchanged,
# inside the nested-KVM rig (scripts/nested-kvm: an L1 with a real
# /dev/kvm under QEMU TCG) and its exit status is the test's.
#
# A kvm test never skips for want of KVM.  It skips (77) only when
# qemu-system-x86_64 is missing outside CI; with CI set that is a failure,
# because .ci/run installs QEMU.
#
# Work that is slow under the rig's emulation but needs no KVM (building an
# initramfs or a tools image: seconds here, about a minute inside L1) can be
# done before sourcing this file, into a directory named by the exported
# KVM_RIG_PREP: the rig shares it with L1 at the same path, and the run
# inside L1 finds KVM_RIG_PREP set and skips the preparation:
#
#   if [ -z "${KVM_RIG_PREP:-}" ]; then
#           export KVM_RIG_PREP=$(mktemp -d); trap 'rm -rf "$KVM_RIG_PREP"' EXIT
#           scripts/mkinitramfs "$KVM_RIG_PREP/initrd.gz" ...
#   fi
#   . "$(dirname "$0")/lib/kvm-rig.sh" "$@"
#
# Env: KVM_RIG_TIMEOUT (seconds for L1, default 1500), KVM_RIG_MEM (L1 RAM,
# default scripts/nested-kvm's), SMVMM_KVM=native|nested (force a path).
_kr_src=${SMVMM_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
if _kr_why=$("$_kr_src/scripts/nested-kvm" --probe); then
	echo "kvm-rig: ${_kr_why}${SMVMM_IN_L1:+ (inside L1 of the nested-KVM rig)}"
elif [ -n "${SMVMM_IN_L1:-}" ]; then
	echo "FAIL: inside L1 of the nested-KVM rig, but ${_kr_why#nested: }"
	exit 1
elif ! command -v "${QEMU:-qemu-system-x86_64}" >/dev/null 2>&1; then
	if [ -n "${CI:-}" ]; then
		echo "FAIL: ${_kr_why#nested: }, and ${QEMU:-qemu-system-x86_64} for the nested-KVM rig is missing (CI installs it)"
		exit 1
	fi
	echo "SKIP: ${_kr_why#nested: }, and ${QEMU:-qemu-system-x86_64} is missing (apt-get install qemu-system-x86)"
	exit 77
else
	echo "kvm-rig: ${_kr_why#nested: }: running $(basename "$0") inside the nested-KVM rig"
	# L1's /tmp is its own tmpfs: a source or build tree under /tmp (a CI
	# clone) is shared into L1 at its own path.
	_kr_rw=()
	for _kr_d in "$_kr_src" "${SMVMM_BUILD_DIR:-}"; do
		case "$_kr_d" in
		/tmp/*) case "$_kr_d/" in "$_kr_src"/?*) ;; *) _kr_rw+=(--rw "$_kr_d") ;; esac ;;
		esac
	done
	# Not exec: the test's EXIT trap (removing KVM_RIG_PREP) still runs.
	"$_kr_src/scripts/nested-kvm" --quiet --no-tty --timeout "${KVM_RIG_TIMEOUT:-1500}" \
		${KVM_RIG_MEM:+--mem "$KVM_RIG_MEM"} ${KVM_RIG_PREP:+--rw "$KVM_RIG_PREP"} \
		${_kr_rw[@]+"${_kr_rw[@]}"} -- bash "$0" "$@"
	exit $?
fi
unset _kr_src _kr_why
