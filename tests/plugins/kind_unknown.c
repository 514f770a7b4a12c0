// SPDX-License-Identifier: MIT
/* Test plugin: descriptor kind is no known kind. */
#define TP_KIND 7
#include "good_device.c"
