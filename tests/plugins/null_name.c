// SPDX-License-Identifier: MIT
/* Test plugin: descriptor name is NULL. */
#define TP_NAME NULL
#include "good_device.c"
