// SPDX-License-Identifier: MIT
/* Test plugin: an ops table from before the optional snapshot ops (accepted; the host sees them NULL although the object has them set). */
#define TP_OPS_SIZE offsetof(struct smvmm_device_ops, snapshot_save)
#include "good_device.c"
