// SPDX-License-Identifier: MIT
/* Test plugin: required op queue_notify is NULL. */
#define TP_QUEUE_NOTIFY NULL
#include "good_device.c"
