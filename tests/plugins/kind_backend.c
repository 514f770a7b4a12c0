// SPDX-License-Identifier: MIT
/* Test plugin: device ops, but the descriptor says backend. */
#define TP_KIND SMVMM_PLUGIN_BACKEND
#include "good_device.c"
