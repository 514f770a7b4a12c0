// SPDX-License-Identifier: MIT
/*
 * Crash guest: an SSE instruction.  On a software-emulated KVM without
 * VT-x/SVM (kvm_pvm) the instruction cannot be emulated and the vCPU ends
 * in KVM_EXIT_INTERNAL_ERROR; the VMM must report that and exit cleanly.
 * On a CPU that runs it (QEMU TCG, hardware KVM) the guest says so and
 * powers off through ACPI, so the test harness can tell the two apart.
 */
#include "probe.h"

const char guest_banner[] = "smvmm-crash-emul: hello";

__noreturn void guest_main(void)
{
	u64 cr0, cr4;

	/* Make SSE architecturally legal (SDM Vol. 3 §13.1): CR0.EM = 0,
	 * CR0.MP = 1, CR4.OSFXSR = 1, CR4.OSXMMEXCPT = 1.  Otherwise the CPU
	 * would raise #UD instead of executing it. */
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~(1ull << 2)) | (1ull << 1);
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1ull << 9) | (1ull << 10);
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));

	kprintf("smvmm-crash-emul: executing pxor %%xmm0, %%xmm0\n");
	/* Written out as bytes (66 0f ef c0 = pxor %xmm0,%xmm0): the probe is
	 * built with -mgeneral-regs-only, and the point is the exact
	 * instruction, not what a compiler would pick. */
	__asm__ volatile(".byte 0x66, 0x0f, 0xef, 0xc0" ::: "memory");
	kprintf("smvmm-crash-emul: SSE instruction completed (no emulation failure)\n");
	acpi_find_quiet();
	acpi_poweroff();
	kprintf("smvmm-crash-emul: power-off failed, halting\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
