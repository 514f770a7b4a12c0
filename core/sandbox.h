/* SPDX-License-Identifier: MIT */
/*
 * The jail: [sandbox] of the machine description (struct machine_sandbox,
 * validated by machine.c), in the manner of Firecracker's jailer.  What runs
 * as root and why: docs/sandbox.md, "Privilege drop (jail)".
 *
 * Two calls, in this order, from the main thread:
 *
 *   sandbox_prepare  at start-up, right after the machine description is
 *                    loaded and before anything else (single-threaded: no
 *                    plugin is loaded, no file opened).  For a jail (as
 *                    root): creates the cgroup and writes its
 *                    limits, sets no_new_privs, enters the new namespaces
 *                    and, for a PID namespace, forks: the parent stays as a
 *                    small supervisor that forwards signals and returns the
 *                    child's exit status; the child (PID 1 of the new
 *                    namespace) moves into the cgroup and goes on.
 *   sandbox_enter    once the VM is set up (every plugin loaded, every file,
 *                    device and socket it needs open: kernel, initrd, disks,
 *                    /dev/kvm, vsock listeners, serial) and before any
 *                    guest code runs: vm_start calls it, before the seccomp
 *                    filters and the vCPUs.  Sets RLIMIT_FSIZE (fsize_limit;
 *                    not earlier: guest RAM is a memfd it would not let
 *                    grow); for a jail: pivot_root into [sandbox] chroot,
 *                    drop supplementary groups, setresgid, setresuid,
 *                    no_new_privs, and check that regaining root fails.
 *
 * Without [sandbox] user (or --uid) there is no jail: smvmm runs as whoever
 * started it (a user in group kvm is enough), with fsize_limit if set.
 */
#ifndef SMVMM_SANDBOX_H
#define SMVMM_SANDBOX_H

#include <stddef.h>
#include <stdio.h>

#include "machine.h"

/*
 * sandbox_prepare: see above.  Returns 0 to go on (no jail, or the jail's
 * process), 1 in the supervisor once its child has ended (*status: the
 * child's exit status, 128+N if it was killed by signal N; main returns
 * it), or -errno with a one-line message in err naming the [sandbox] key
 * (or --uid/--gid/--chroot) and the reason.  Call once, before any thread
 * exists.  Main thread.
 */
int sandbox_prepare(const struct smvmm_machine *m, int *status, char *err,
		    size_t errlen);

/*
 * sandbox_enter: see above.  0 (also when there is no jail), or -errno with
 * a message naming the key and the reason; the caller must then not run
 * the guest.  -EPERM when sandbox_prepare did not run first for a jail.
 * Other threads may exist (virtio-blk workers): the credential changes
 * apply to all of them (glibc's setxid broadcast), pivot_root moves their
 * shared root, and the namespaces and no_new_privs they got from
 * sandbox_prepare before they were started.  Main thread.
 */
int sandbox_enter(const struct smvmm_machine *m, char *err, size_t errlen);

/* sandbox_describe: the [sandbox] plan, for --check. */
void sandbox_describe(const struct smvmm_machine *m, FILE *f);

/*
 * sandbox_cgroup_setup: create m->sandbox.cgroup (and missing parents),
 * enable the controllers its limits need in the cgroup.subtree_control of
 * every ancestor from `root` (the hierarchy's root; NULL: found by statfs)
 * down, and write each limit file.  0 or -errno with a message naming the
 * key.  Part of sandbox_prepare; exposed for the unit tests, which pass a
 * plain directory tree as `root`.
 */
int sandbox_cgroup_setup(const struct smvmm_machine *m, const char *root,
			 char *err, size_t errlen);

#endif
