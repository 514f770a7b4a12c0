// SPDX-License-Identifier: MIT
/* Test plugin: built for ABI major 2 (exports smvmm_plugin_v2 only). */
#define TP_SYMBOL smvmm_plugin_v2
#define TP_ABI_MAJOR 2
#include "good_device.c"
