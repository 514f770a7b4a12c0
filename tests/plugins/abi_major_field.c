// SPDX-License-Identifier: MIT
/* Test plugin: exports smvmm_plugin_v1 but its descriptor says major 2. */
#define TP_ABI_MAJOR 2
#include "good_device.c"
