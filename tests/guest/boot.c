// SPDX-License-Identifier: MIT
/*
 * Probe guest boot glue, shared by the probe and the crash guests.
 *
 * head.S has two ways in:
 *  - the Linux 64-bit boot protocol entry (ELF e_entry, bzImage
 *    protected-mode part + 0x200): long mode, RSI = struct boot_params;
 *  - the PVH entry (ELF note XEN_ELFNOTE_PHYS32_ENTRY): 32-bit protected
 *    mode, EBX = struct hvm_start_info.  head.S enables long mode with its
 *    own page tables, then pvh_convert() below turns hvm_start_info into a
 *    boot_params and the PVH path continues at the Linux 64-bit entry.  So
 *    both boot paths share everything from the 64-bit entry on.
 */
#include "probe.h"

struct boot_info boot;
/* Test expectations; probe.c fills them from the command line. */
struct probe_opts opts = { .vcpus = -1, .devices = -1, .rng = -1, .nmmio = -1,
			   .rng_bytes = 64, .timeout_ms = 5000 };

/*
 * Everything pvh_convert() touches lives in .data, not .bss: it runs before
 * the 64-bit entry clears .bss, which would wipe its result.
 */
#define __pvhdata __attribute__((section(".data.pvh")))
static u8 pvh_bp[4096] __aligned(4096) __pvhdata;
static char pvh_cmdline[2048] __pvhdata;
/* Set by pvh_convert; copied into `boot` after .bss is cleared. */
static struct {
	u32 used, magic, version, memmap_entries, empty_entries;
	const char *error;
} pvh_state __pvhdata;

static void put32(u8 *p, u32 v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (u8)(v >> (8 * i));
}
static void put64(u8 *p, u64 v)
{
	put32(p, (u32)v);
	put32(p + 4, (u32)(v >> 32));
}

/*
 * hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h):
 *   0 magic 0x336ec578, 4 version, 8 flags, 12 nr_modules, 16 modlist_paddr,
 *   24 cmdline_paddr, 32 rsdp_paddr, (version >= 1:) 40 memmap_paddr,
 *   48 memmap_entries, each entry {u64 addr, u64 size, u32 type, u32 rsvd}.
 * Called from head.S in long mode, on the boot stack, before .bss is
 * cleared.  Returns the boot_params to hand to the 64-bit entry.
 */
u8 *pvh_convert(u32 start_info)
{
	const u8 *si = (const u8 *)(uintptr_t)start_info;

	pvh_state.used = 1;
	if (!start_info) {
		pvh_state.error = "EBX (hvm_start_info) is 0";
		return pvh_bp;
	}
	pvh_state.magic = get32(si);
	pvh_state.version = get32(si + 4);
	if (pvh_state.magic != 0x336ec578) {
		pvh_state.error = "hvm_start_info magic is not 0x336ec578";
		return pvh_bp;
	}

	/* Copy the command line: boot_params.cmd_line_ptr is 32 bits, and a
	 * copy also makes its length bounded. */
	u64 cl = get64(si + 24);
	if (cl && phys_ok(cl, 1)) {
		const char *s = (const char *)(uintptr_t)cl;
		size_t i;
		for (i = 0; i + 1 < sizeof(pvh_cmdline) && phys_ok(cl + i, 1) &&
			    s[i];
		     i++)
			pvh_cmdline[i] = s[i];
		pvh_cmdline[i] = '\0';
		put32(pvh_bp + BP_CMD_LINE_PTR, (u32)(uintptr_t)pvh_cmdline);
		put32(pvh_bp + BP_CMDLINE_SIZE, sizeof(pvh_cmdline) - 1);
	}
	put64(pvh_bp + BP_ACPI_RSDP_ADDR, get64(si + 32));

	if (pvh_state.version < 1) {
		pvh_state.error = "hvm_start_info version 0 has no memory map";
		return pvh_bp;
	}
	u64 mm = get64(si + 40);
	u32 n = get32(si + 48);
	pvh_state.memmap_entries = n;
	if (n > E820_MAX) {
		pvh_state.error = "more than 128 memmap entries (truncated)";
		n = E820_MAX;
	}
	if (n && !phys_ok(mm, (u64)n * 24)) {
		pvh_state.error = "memmap_paddr outside the identity map";
		n = 0;
	}
	u32 k = 0;
	for (u32 i = 0; i < n; i++) {
		const u8 *e = (const u8 *)(uintptr_t)(mm + 24 * i);
		/* qboot (QEMU microvm's firmware) ends its memmap with an
		 * all-zero entry; like Linux's e820 sanitizer, drop empty
		 * entries here.  Everything else is passed on unchanged for
		 * the e820 checks. */
		if (!get64(e + 8)) {
			pvh_state.empty_entries++;
			continue;
		}
		u8 *d = pvh_bp + BP_E820_TABLE + 20 * k++;
		put64(d, get64(e));
		put64(d + 8, get64(e + 8));
		put32(d + 16, get32(e + 16));
	}
	pvh_bp[BP_E820_ENTRIES] = (u8)k;
	return pvh_bp;
}

/* ---- page tables: identity map [0, 4 GiB) with 2 MiB pages ---- */
static u64 pml4[512] __aligned(4096);
static u64 pdpt[512] __aligned(4096);
static u64 pd[4][512] __aligned(4096);

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PWT 0x8ull
#define PTE_PCD 0x10ull
#define PTE_PS 0x80ull

static void paging_init(void)
{
	/*
	 * The VMM's boot page tables may map only the first GiB (Firecracker
	 * does); virtio-mmio, the IOAPIC and the LAPIC live in the top GiB
	 * below 4 GiB.  That GiB is mapped uncached (PCD|PWT) since it is
	 * MMIO.
	 */
	for (int g = 0; g < 4; g++) {
		u64 attr = PTE_P | PTE_RW | PTE_PS | (g == 3 ? PTE_PCD | PTE_PWT : 0);
		for (int i = 0; i < 512; i++)
			pd[g][i] = ((u64)(g * 512 + i) << 21) | attr;
		pdpt[g] = (uintptr_t)pd[g] | PTE_P | PTE_RW;
	}
	pml4[0] = (uintptr_t)pdpt | PTE_P | PTE_RW;
	__asm__ volatile("mov %0, %%cr3" : : "r"((uintptr_t)pml4) : "memory");
}

/*
 * probe_start: called by head.S on the boot stack (outside .bss) with
 * interrupts off.  `bp` is the boot_params physical address.
 */
__noreturn void probe_start(u64 bp)
{
	serial_puts(guest_banner);
	serial_putc('\n');

	/* .bss is ours to clear (the loader may not have: a bzImage's
	 * init_size area is not zeroed by the boot loader). */
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	paging_init();

	boot.kind = pvh_state.used ? BOOT_PVH : BOOT_LINUX64;
	boot.bp_addr = bp;
	boot.bp = (const u8 *)(uintptr_t)bp;
	boot.pvh_magic = pvh_state.magic;
	boot.pvh_version = pvh_state.version;
	boot.pvh_memmap_entries = pvh_state.memmap_entries;
	boot.pvh_empty_entries = pvh_state.empty_entries;
	boot.pvh_error = pvh_state.error;
	time_init();
	guest_main();
}
