// SPDX-License-Identifier: MIT
/* Test plugin: needs ABI 1.<host minor + 1>. */
#define TP_ABI_MINOR (SMVMM_PLUGIN_ABI_MINOR + 1)
#include "good_device.c"
