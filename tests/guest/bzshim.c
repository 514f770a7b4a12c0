// SPDX-License-Identifier: MIT
/*
 * bzshim: a minimal Linux boot loader for testing probe.bzimage under QEMU,
 * whose firmware cannot enter a bzImage's 64-bit entry.  The shim is a PVH
 * ELF (same head.S/boot.c as the probe, linked at 32 MiB) with the bzImage
 * embedded.  It does what a 64-bit boot loader does (Linux
 * Documentation/arch/x86/boot.rst, "64-bit boot protocol"):
 *   - checks boot_flag, "HdrS", version >= 2.12, XLF_KERNEL_64, LOADED_HIGH;
 *   - copies the setup header (0x1f1 .. 0x202 + byte at 0x201) into a zeroed
 *     boot_params, sets type_of_loader, cmd_line_ptr, e820 and the RSDP;
 *   - loads the protected-mode part at code32_start (1 MiB), which is not
 *     the image's pref_address, so the probe's self-relocation runs too;
 *   - jumps to load address + 0x200 with RSI = boot_params, IF = 0, on its
 *     identity-mapped page tables.
 * Its own lines start with "bzshim:" so the probe's output stays intact.
 */
#include "probe.h"

const char guest_banner[] = "bzshim: hello";

extern const u8 bz_payload[], bz_payload_end[];
static u8 zero_page[4096] __aligned(4096);

static __noreturn void fail(const char *why)
{
	kprintf("bzshim: cannot boot the bzImage: %s\n", why);
	for (;;)
		__asm__ volatile("cli; hlt");
}

__noreturn void guest_main(void)
{
	const u8 *bz = bz_payload;
	u64 size = (u64)(bz_payload_end - bz_payload);
	const u8 *in = boot.bp; /* what PVH gave us, as boot_params */

	if (size < 1024 || get16(bz + 0x1fe) != 0xaa55 ||
	    memcmp(bz + 0x202, "HdrS", 4))
		fail("no boot_flag/HdrS");
	if (get16(bz + 0x206) < 0x020c || !(get16(bz + 0x236) & 1) ||
	    !(bz[0x211] & 1))
		fail("not a 64-bit, LOADED_HIGH, >= 2.12 kernel");
	u32 sects = bz[0x1f1] ? bz[0x1f1] : 4;
	u64 setup = (u64)(sects + 1) * 512;
	u64 pm = (u64)get32(bz + 0x1f4) * 16;
	if (setup + pm > size)
		fail("syssize runs past the file");
	u64 load = get32(bz + 0x214); /* code32_start */
	u64 init = get32(bz + 0x260);
	if (load != 0x100000 || init < pm || load + pm > (uintptr_t)_start)
		fail("unexpected code32_start/init_size");

	u32 hdr_end = 0x202 + bz[0x201];
	memset(zero_page, 0, sizeof(zero_page));
	memcpy(zero_page + 0x1f1, bz + 0x1f1, hdr_end - 0x1f1);
	zero_page[BP_TYPE_OF_LOADER] = 0xff;
	memcpy(zero_page + BP_CMD_LINE_PTR, in + BP_CMD_LINE_PTR, 4);
	memcpy(zero_page + BP_ACPI_RSDP_ADDR, in + BP_ACPI_RSDP_ADDR, 8);
	zero_page[BP_E820_ENTRIES] = in[BP_E820_ENTRIES];
	memcpy(zero_page + BP_E820_TABLE, in + BP_E820_TABLE, 20 * E820_MAX);

	memcpy((void *)(uintptr_t)load, bz + setup, pm);
	kprintf("bzshim: setup %llu bytes, protected-mode part %llu bytes at 0x%llx, "
		"pref_address 0x%llx, entering 0x%llx\n",
		(unsigned long long)setup, (unsigned long long)pm,
		(unsigned long long)load, (unsigned long long)get64(bz + 0x258),
		(unsigned long long)(load + 0x200));
	__asm__ volatile("cli; jmp *%0"
			 : : "r"(load + 0x200), "S"(zero_page) : "memory");
	__builtin_unreachable();
}
