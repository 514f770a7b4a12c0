// SPDX-License-Identifier: MIT
/*
 * Crash guest: triple fault.  Loads an IDT with limit 0, then executes ud2:
 * the #UD cannot be delivered (#GP), nor can the #GP (#DF), nor the #DF, so
 * the CPU shuts down (SDM Vol. 3 §6.15, "Interrupt 8").  Under KVM that is
 * KVM_EXIT_SHUTDOWN; QEMU with -no-reboot exits.  The VMM must report a
 * guest crash, not hang and not crash itself.
 */
#include "probe.h"

const char guest_banner[] = "smvmm-crash-triple: hello";

__noreturn void guest_main(void)
{
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) none = { 0, 0 };

	kprintf("smvmm-crash-triple: loading an empty IDT and executing ud2\n");
	__asm__ volatile("lidt %0\n\tud2" : : "m"(none));
	/* Not reached on a correct CPU. */
	kprintf("smvmm-crash-triple: still running after ud2\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}
