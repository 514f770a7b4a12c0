// SPDX-License-Identifier: MIT
/*
 * x86 guest physical memory map: RAM regions and the e820 table.  The map is
 * described at the top of x86.h.
 */
#include <errno.h>

#include "x86.h"

uint64_t x86_ram_low_end(uint64_t mem_size)
{
	return mem_size < X86_RAM_LOW_MAX ? mem_size : X86_RAM_LOW_MAX;
}

uint64_t x86_ram_high_size(uint64_t mem_size)
{
	return mem_size - x86_ram_low_end(mem_size);
}

int x86_memory_layout(struct gmem *m, uint64_t mem_size)
{
	uint64_t low = x86_ram_low_end(mem_size);
	uint64_t high = x86_ram_high_size(mem_size);
	int ret;

	if (mem_size < X86_MEM_MIN || (mem_size & 0xfff))
		return -EINVAL;
	/* The high region must not wrap the 64-bit address space. */
	if (high > UINT64_MAX - X86_RAM_HIGH_BASE)
		return -EINVAL;
	ret = gmem_add_ram(m, 0, low, "ram-low");
	if (ret < 0)
		return ret;
	if (high) {
		ret = gmem_add_ram(m, X86_RAM_HIGH_BASE, high, "ram-high");
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int e820_add(struct x86_e820_entry *e, unsigned max, unsigned *n,
		    uint64_t addr, uint64_t end, uint32_t type)
{
	if (end <= addr)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	e[*n].addr = addr;
	e[*n].size = end - addr;
	e[*n].type = type;
	(*n)++;
	return 0;
}

int x86_e820_build(uint64_t mem_size, struct x86_e820_entry *e, unsigned max)
{
	uint64_t low = x86_ram_low_end(mem_size);
	uint64_t high = x86_ram_high_size(mem_size);
	unsigned n = 0;
	int ret = 0;

	/*
	 * The PC layout Linux expects (arch/x86/kernel/e820.c, and what
	 * firmware reports): base memory up to the EBDA, the EBDA reserved,
	 * the BIOS area (here: our ACPI tables) reserved, extended memory from
	 * 1 MiB.  [0xa0000, 0xe0000) is the legacy VGA/option ROM hole.
	 */
	ret |= e820_add(e, max, &n, 0, low < X86_EBDA_ADDR ? low : X86_EBDA_ADDR,
			X86_E820_RAM);
	ret |= e820_add(e, max, &n, X86_EBDA_ADDR, 0xa0000, X86_E820_RESERVED);
	ret |= e820_add(e, max, &n, X86_ACPI_BASE, X86_BIOS_END, X86_E820_RESERVED);
	ret |= e820_add(e, max, &n, X86_KERNEL_MIN_ADDR, low, X86_E820_RAM);
	if (high)
		ret |= e820_add(e, max, &n, X86_RAM_HIGH_BASE,
				X86_RAM_HIGH_BASE + high, X86_E820_RAM);
	return ret ? -ENOSPC : (int)n;
}
