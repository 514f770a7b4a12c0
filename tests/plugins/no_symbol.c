// SPDX-License-Identifier: MIT
/* Test plugin: a shared object without any smvmm_plugin_v<N> symbol. */
__attribute__((visibility("default"))) int smvmm_test_not_a_plugin = 42;
