// SPDX-License-Identifier: MIT
/* Test plugin: descriptor ops is NULL. */
#define TP_OPS NULL
#include "good_device.c"
