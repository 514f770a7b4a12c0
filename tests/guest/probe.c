// SPDX-License-Identifier: MIT
/*
 * smvmm probe guest: checks the machine from the inside and prints TAP on
 * COM1, then powers off through ACPI.  See README.md for the options and
 * the output.
 */
#include "probe.h"

const char guest_banner[] = "smvmm-probe: hello";

static char cmdline[4096];
static struct e820_entry map[E820_MAX];
static int nmap;

/* ---- command line ---- */
bool probe_parse_u64(const char *s, size_t n, u64 max, u64 *v)
{
	u64 x = 0;
	unsigned base = 10;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		if (x > (max - d) / base)
			return false;
		x = x * base + d;
	}
	*v = x;
	return true;
}

static bool parse_int(const char *s, size_t n, u64 lo, u64 hi, int *out)
{
	u64 v;

	if (!probe_parse_u64(s, n, ~0ull, &v) || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

/* "base:irq,base:irq" */
static bool parse_mmio(const char *s, size_t n)
{
	opts.nmmio = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i, colon = 0;
		while (j < n && s[j] != ',') {
			if (s[j] == ':')
				colon = j;
			j++;
		}
		u64 base, irq;
		if (!colon || colon < i || opts.nmmio >= MAX_VDEVS ||
		    !probe_parse_u64(s + i, colon - i, ~0ull, &base) ||
		    !probe_parse_u64(s + colon + 1, j - colon - 1, ~0ull, &irq) ||
		    irq > 0xffffffffull)
			return false;
		opts.mmio[opts.nmmio].base = base;
		opts.mmio[opts.nmmio].irq = (u32)irq;
		opts.nmmio++;
		i = j + 1;
	}
	return true;
}

static void parse_cmdline(void)
{
	char bad[160] = "";
	int nbad = 0;

	opts.vcpus = opts.devices = opts.rng = opts.nmmio = -1;
	opts.irq = false;
	opts.rng_bytes = 64;
	opts.timeout_ms = 5000;

	for (const char *p = cmdline; *p;) {
		while (*p == ' ' || *p == '\t')
			p++;
		const char *tok = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		size_t len = (size_t)(p - tok);
		if (len < 6 || strncmp(tok, "probe.", 6))
			continue;
		const char *eq = tok;
		while (eq < p && *eq != '=')
			eq++;
		size_t klen = (size_t)(eq - tok) - 6;
		const char *key = tok + 6, *val = eq + 1;
		size_t vlen = eq < p ? (size_t)(p - val) : 0;
		bool ok = eq < p;
		int v = 0;
#define KEY(k) (klen == sizeof(k) - 1 && !strncmp(key, k, klen))
		if (!ok)
			;
		else if (KEY("vcpus"))
			ok = parse_int(val, vlen, 1, MAX_CPUS, &opts.vcpus);
		else if (KEY("devices"))
			ok = parse_int(val, vlen, 0, MAX_VDEVS, &opts.devices);
		else if (KEY("rng"))
			ok = parse_int(val, vlen, 0, MAX_VDEVS, &opts.rng);
		else if (KEY("mmio"))
			ok = parse_mmio(val, vlen);
		else if (KEY("irq")) {
			if ((ok = parse_int(val, vlen, 0, 1, &v)))
				opts.irq = v;
		} else if (KEY("rng_bytes")) {
			if ((ok = parse_int(val, vlen, 1, 4096, &v)))
				opts.rng_bytes = (u32)v;
		} else if (KEY("spin")) {
			if ((ok = parse_int(val, vlen, 0, 1, &v)))
				opts.spin = v;
		} else if (KEY("timeout_ms")) {
			if ((ok = parse_int(val, vlen, 1, 600000, &v)))
				opts.timeout_ms = (u32)v;
		} else {
			/* Device drivers own their probe.<dev>* options. */
			ok = blk_option(key, klen, val, vlen) ||
			     vsock_option(key, klen, val, vlen);
		}
#undef KEY
		if (!ok) {
			size_t l = strlen(bad);
			snprintf(bad + l, sizeof(bad) - l, "%s%.*s", nbad ? ", " : "",
				 (int)(len > 40 ? 40 : len), tok);
			nbad++;
		}
	}
	tap(nbad == 0, "cmdline: probe.* options valid%s%s", nbad ? " # bad: " : "",
	    bad);
}

/* ---- boot_params ---- */
static bool check_boot_params(void)
{
	const u8 *bp = boot.bp;

	if (boot.kind == BOOT_PVH) {
		kprintf("# boot: PVH entry, hvm_start_info version %u, %u memmap entries (%u empty, dropped)\n",
			boot.pvh_version, boot.pvh_memmap_entries,
			boot.pvh_empty_entries);
		tap(!boot.pvh_error, "PVH: hvm_start_info magic, version and memory map%s%s",
		    boot.pvh_error ? " # " : "",
		    boot.pvh_error ? boot.pvh_error : "");
	} else {
		kprintf("# boot: Linux 64-bit entry, boot_params at 0x%llx\n",
			(unsigned long long)boot.bp_addr);
		if (!tap(boot.bp_addr && phys_ok(boot.bp_addr, 4096),
			 "boot_params pointer (RSI) is usable # 0x%llx",
			 (unsigned long long)boot.bp_addr))
			return false;
		kprintf("# boot_params: setup header version 0x%x, loader 0x%x, loadflags 0x%x\n",
			get16(bp + BP_VERSION), bp[BP_TYPE_OF_LOADER],
			bp[BP_LOADFLAGS]);
		tap(get16(bp + BP_BOOT_FLAG) == 0xaa55 &&
			    !memcmp(bp + BP_HEADER, "HdrS", 4),
		    "boot_params setup header: boot_flag 0xAA55, magic HdrS");
		/* Linux's sanitize_boot_params() wipes fields when this is set. */
		tap(bp[BP_SENTINEL] == 0, "boot_params.sentinel (0x1ef) is 0");
		/* Linux ignores an initrd when type_of_loader is 0. */
		tap(bp[BP_TYPE_OF_LOADER] != 0,
		    "boot_params.hdr.type_of_loader is set # 0x%x",
		    bp[BP_TYPE_OF_LOADER]);
	}

	u64 cl = get32(bp + BP_CMD_LINE_PTR) |
		 (u64)get32(bp + BP_EXT_CMD_LINE_PTR) << 32;
	u32 max = get32(bp + BP_CMDLINE_SIZE);
	if (!max || max >= sizeof(cmdline))
		max = sizeof(cmdline) - 1;
	bool ok = cl && phys_ok(cl, max + 1);
	size_t n = 0;
	if (ok) {
		const char *s = (const char *)(uintptr_t)cl;
		while (n <= max && s[n])
			n++;
		ok = n <= max;
		if (ok)
			memcpy(cmdline, s, n);
	}
	cmdline[n < sizeof(cmdline) ? n : sizeof(cmdline) - 1] = '\0';
	tap(ok, "boot_params command line at 0x%llx, NUL-terminated within %u bytes",
	    (unsigned long long)cl, max);
	kprintf("# cmdline: %s\n", cmdline);
	return true;
}

static void check_e820(void)
{
	const u8 *bp = boot.bp;
	u32 n = bp[BP_E820_ENTRIES];
	const char *why = NULL;
	bool unsorted = false;
	u64 ram = 0;

	if (n == 0 || n > E820_MAX) {
		tap(false, "e820: %u entries", n);
		return;
	}
	for (u32 i = 0; i < n; i++) {
		const u8 *e = bp + BP_E820_TABLE + 20 * i;
		map[i].addr = get64(e);
		map[i].size = get64(e + 8);
		map[i].type = get32(e + 16);
		kprintf("# e820: [0x%09llx-0x%09llx) type %u\n",
			(unsigned long long)map[i].addr,
			(unsigned long long)(map[i].addr + map[i].size),
			map[i].type);
		if (!map[i].size || map[i].addr + map[i].size < map[i].addr)
			why = "empty or wrapping entry";
		for (u32 j = 0; j < i && !why; j++)
			if (map[i].addr < map[j].addr + map[j].size &&
			    map[j].addr < map[i].addr + map[i].size)
				why = "overlapping entries";
		if (i && map[i].addr < map[i - 1].addr)
			unsorted = true;
		if (map[i].type == E820_RAM)
			ram += map[i].size;
	}
	nmap = (int)n;
	tap(!why, "e820: %u entries, none empty, none overlapping%s%s # %llu MiB RAM",
	    n, why ? " # " : "", why ? why : "",
	    (unsigned long long)(ram >> 20));
	/* Linux sorts the map itself, but the boot protocol's producers
	 * (and smvmm) hand it over sorted; qboot under KVM does not. */
	tap(!unsorted, "e820: entries sorted by address");

	bool at1m = false, image = false;
	u64 img0 = (uintptr_t)_start, img1 = (uintptr_t)_end;
	for (int i = 0; i < nmap; i++) {
		u64 a = map[i].addr, e = a + map[i].size;
		if (map[i].type != E820_RAM)
			continue;
		at1m |= a <= 0x100000 && e > 0x100000;
		image |= a <= img0 && e >= img1;
	}
	tap(at1m, "e820: RAM at 1 MiB");
	tap(image, "e820: RAM holds the probe image [0x%llx, 0x%llx)",
	    (unsigned long long)img0, (unsigned long long)img1);
}

__noreturn void guest_main(void)
{
	idt_init();
	kprintf("TAP version 13\n");
	if (!check_boot_params())
		tap_finish();
	parse_cmdline();
	check_e820();
	acpi_probe(map, nmap);
	virtio_probe_all();
	if (opts.spin) {
		/* For the VMM's stop tests: a guest that never ends by itself.
		 * A busy loop, not hlt, so the vCPU stays in the guest. */
		kprintf("# probe: spinning (probe.spin=1)\n");
		for (;;)
			__asm__ volatile("pause");
	}
	tap_finish();
}
