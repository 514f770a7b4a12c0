/* SPDX-License-Identifier: MIT */
/*
 * `smvmm vhost-user`: serve one device plugin as a vhost-user back-end
 * (QEMU docs/interop/vhost-user.rst).
 */
#ifndef SMVMM_VHOST_USER_H
#define SMVMM_VHOST_USER_H

/*
 * vhost_user_main: the `smvmm vhost-user ...` subcommand; argv[0] is
 * "vhost-user".  Returns the process exit status.  Main thread.
 */
int vhost_user_main(int argc, char **argv);

#endif
