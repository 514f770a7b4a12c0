// SPDX-License-Identifier: MIT
/*
 * Test plugin: calls a function no library defines.  A MODULE links with
 * undefined symbols allowed, so the failure shows at dlopen(RTLD_NOW).
 */
extern int smvmm_test_no_such_function(void);

__attribute__((visibility("default"))) int smvmm_test_call(void)
{
	return smvmm_test_no_such_function();
}
#include "good_device.c"
