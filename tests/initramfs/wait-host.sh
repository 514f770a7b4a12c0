#!/bin/sh
# SPDX-License-Identifier: MIT
#
# An /etc/smvmm-init.d check (mkinitramfs --extra, tests/e2e/jail_linux_kvm.sh):
# holds the guest, after the built-in checks and before the power-off,
# until the host has looked at the VMM from outside; the host then sends one
# line on the console.
echo "smvmm-init: waiting for the host"
read -r -t 600 line || { echo "smvmm-init: no word from the host"; exit 1; }
echo "smvmm-init: the host said '$line'"
