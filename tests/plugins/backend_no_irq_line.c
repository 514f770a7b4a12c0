// SPDX-License-Identifier: MIT
/* Test plugin: a backend whose required op set_irq_line is NULL. */
#define TP_NO_SET_IRQ_LINE 1
#include "good_backend.c"
