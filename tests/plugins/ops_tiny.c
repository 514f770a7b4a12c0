// SPDX-License-Identifier: MIT
/* Test plugin: ops struct_size ends before the required reset op. */
#define TP_OPS_SIZE offsetof(struct smvmm_device_ops, reset)
#include "good_device.c"
