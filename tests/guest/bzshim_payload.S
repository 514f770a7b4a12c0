/* SPDX-License-Identifier: MIT */
/* The bzImage that bzshim.c boots, embedded at build time. */
	.section .rodata.payload, "a"
	.balign 4096
	.globl bz_payload, bz_payload_end
bz_payload:
	.incbin BZIMAGE_PATH
bz_payload_end:
	.section .note.GNU-stack, "", @progbits
