// SPDX-License-Identifier: MIT
/* Test plugin: descriptor struct_size stops before the ops field. */
#define TP_DESC_SIZE offsetof(struct smvmm_plugin_desc, ops)
#include "good_device.c"
