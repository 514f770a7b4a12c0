// SPDX-License-Identifier: MIT
/* Test plugin: descriptor name is an empty string. */
#define TP_NAME ""
#include "good_device.c"
