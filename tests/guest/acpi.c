// SPDX-License-Identifier: MIT
/*
 * Probe guest ACPI checks: RSDP, XSDT/RSDT, every table's length and
 * checksum, FADT (DSDT pointer, sleep registers), MADT (CPUs, IOAPICs), and
 * a bounded AML scanner that finds virtio-mmio devices (_HID "LNRO0005")
 * and \_S5 in the DSDT and SSDTs without an AML interpreter.
 *
 * All table contents are untrusted: every pointer is range-checked against
 * the identity map before use, every length against its container.
 */
#include "probe.h"

struct acpi acpi;

static bool quiet;
static const struct e820_entry *e820;
static int ne820;

/* A TAP line, or nothing in quiet mode (crash guests). */
static bool __printf(2, 3) check(bool ok, const char *fmt, ...)
{
	va_list ap;

	if (quiet)
		return ok;
	va_start(ap, fmt);
	vtap(ok, fmt, ap);
	va_end(ap);
	return ok;
}

static u8 sum8(const u8 *p, u32 n)
{
	u8 s = 0;

	while (n--)
		s += *p++;
	return s;
}

#define SDT_HDR_LEN 36
#define MAX_TABLE_LEN (16u << 20)

/*
 * Where a table lives, per the e820 map.  Linux may reuse E820_RAM for
 * anything once it has parsed the tables, so tables belong in ACPI,
 * NVS or reserved memory, or in the legacy hole [640 KiB, 1 MiB).
 */
static const char *placement(u64 addr, u64 len)
{
	if (addr >= 0xa0000 && addr + len <= 0x100000)
		return NULL;
	for (int i = 0; i < ne820; i++) {
		u64 a = e820[i].addr, e = a + e820[i].size;
		if (addr + len <= a || addr >= e)
			continue;
		if (e820[i].type == E820_RAM)
			return "overlaps e820 RAM";
		if (addr >= a && addr + len <= e)
			return NULL;
		return "straddles an e820 boundary";
	}
	return "not described by the e820 map";
}

/*
 * Validate a System Description Table header (ACPI 6.5 §5.2.6) at addr:
 * reachable, length within [36, 16 MiB], checksum 0.  Returns the table
 * or NULL, with the reason in *why.
 */
static const u8 *sdt_check(u64 addr, u32 *len, const char **why)
{
	if (!addr || !phys_ok(addr, SDT_HDR_LEN)) {
		*why = "address outside the identity map";
		return NULL;
	}
	const u8 *t = (const u8 *)(uintptr_t)addr;
	u32 l = get32(t + 4);
	*len = l;
	if (l < SDT_HDR_LEN || l > MAX_TABLE_LEN || !phys_ok(addr, l)) {
		*why = "bad length";
		return NULL;
	}
	if (sum8(t, l)) {
		*why = "bad checksum";
		return NULL;
	}
	*why = NULL;
	return t;
}

/* ---- RSDP (ACPI 6.5 §5.2.5) ---- */
static bool rsdp_valid(const u8 *p)
{
	if (memcmp(p, "RSD PTR ", 8) || sum8(p, 20))
		return false;
	if (p[15] >= 2) {
		u32 l = get32(p + 20);
		if (l < 36 || l > 4096 || !phys_ok((uintptr_t)p, l) || sum8(p, l))
			return false;
	}
	return true;
}

static void find_rsdp(void)
{
	u64 a = get64(boot.bp + BP_ACPI_RSDP_ADDR);
	const char *src = boot.kind == BOOT_PVH ? "hvm_start_info.rsdp_paddr"
						 : "boot_params.acpi_rsdp_addr";

	if (a) {
		if (!phys_ok(a, 36)) {
			check(false, "RSDP: %s 0x%llx outside the identity map",
			      src, (unsigned long long)a);
			return;
		}
	} else {
		/* ACPI 6.5 §5.2.5.1: 16-byte aligned in 0xe0000..0xfffff */
		src = "scan of 0xe0000-0xfffff";
		for (u64 p = 0xe0000; p < 0x100000 - 36; p += 16) {
			if (rsdp_valid((const u8 *)(uintptr_t)p)) {
				a = p;
				break;
			}
		}
		if (!a) {
			check(false, "RSDP: not given by the boot protocol, not found by scan");
			return;
		}
	}
	const u8 *r = (const u8 *)(uintptr_t)a;
	acpi.rsdp = a;
	acpi.rsdp_rev = r[15];
	acpi.rsdp_ok = rsdp_valid(r);
	check(acpi.rsdp_ok,
	      "RSDP at 0x%llx (from %s): signature, checksum%s # revision %u, OEM %.6s",
	      (unsigned long long)a, src,
	      r[15] >= 2 ? " and extended checksum" : "", r[15],
	      (const char *)r + 9);
}

/* ---- FADT (ACPI 6.5 §5.2.9) ---- */
#define FADT_FLAG_HW_REDUCED (1u << 20)

static void read_gas(const u8 *p, struct gas *g)
{
	g->space = p[0];
	g->bit_width = p[1];
	g->bit_offset = p[2];
	g->access_size = p[3];
	g->addr = get64(p + 4);
}

static const char *gas_space(const struct gas *g)
{
	return g->space == 0 ? "mem" : g->space == 1 ? "io" : "other";
}

static void parse_fadt(const u8 *t, u32 len)
{
	u64 dsdt = 0;

	if (len < 116) {
		check(false, "FADT: length %u shorter than ACPI 1.0's 116", len);
		return;
	}
	dsdt = get32(t + 40);
	u32 flags = get32(t + 112);
	if (len >= 148) {
		u64 x = get64(t + 140);
		if (x && dsdt && x != dsdt)
			check(false, "FADT: DSDT 0x%llx and X_DSDT 0x%llx disagree",
			      (unsigned long long)dsdt, (unsigned long long)x);
		if (x)
			dsdt = x;
	}
	acpi.dsdt = dsdt;
	acpi.hw_reduced = flags & FADT_FLAG_HW_REDUCED;
	if (len >= 268) {
		read_gas(t + 244, &acpi.sleep_ctl);
		read_gas(t + 256, &acpi.sleep_sts);
	}
	if (!acpi.hw_reduced) {
		/* Fixed hardware: PM1a_CNT_BLK (I/O port) at offset 64. */
		acpi.pm1a_cnt = get32(t + 64);
	}
	bool ctl_ok = acpi.sleep_ctl.addr &&
		      (acpi.sleep_ctl.space == 0 || acpi.sleep_ctl.space == 1);
	if (acpi.sleep_ctl.addr && acpi.sleep_ctl.space == 1 &&
	    acpi.sleep_ctl.addr > 0xffff)
		ctl_ok = false;
	if (acpi.sleep_ctl.addr && acpi.sleep_ctl.space == 0 &&
	    !phys_ok(acpi.sleep_ctl.addr, 1))
		ctl_ok = false;
	acpi.sleep_ok = ctl_ok || (acpi.pm1a_cnt && acpi.pm1a_cnt <= 0xffff);
	check(acpi.sleep_ok,
	      "FADT: revision %u.%u, HW_REDUCED_ACPI=%u, power-off via %s # SLEEP_CONTROL %s 0x%llx, SLEEP_STATUS %s 0x%llx, PM1a_CNT 0x%x",
	      t[8], len >= 132 ? t[131] : 0, acpi.hw_reduced ? 1 : 0,
	      ctl_ok ? "SLEEP_CONTROL_REG" : acpi.sleep_ok ? "PM1a_CNT" : "nothing",
	      gas_space(&acpi.sleep_ctl),
	      (unsigned long long)acpi.sleep_ctl.addr,
	      gas_space(&acpi.sleep_sts),
	      (unsigned long long)acpi.sleep_sts.addr, acpi.pm1a_cnt);
}

/* ---- MADT (ACPI 6.5 §5.2.12) ---- */
static void parse_madt(const u8 *t, u32 len)
{
	bool ok = true;
	const char *why = "";

	if (len < 44) {
		check(false, "MADT: length %u < 44", len);
		return;
	}
	acpi.lapic_addr = get32(t + 36);
	for (u32 i = 44; i < len;) {
		if (len - i < 2 || t[i + 1] < 2 || t[i + 1] > len - i) {
			ok = false;
			why = "entry length runs past the table";
			break;
		}
		const u8 *e = t + i;
		u8 type = e[0], l = e[1];
		bool enabled = false;
		u32 id = 0;
		switch (type) {
		case 0: /* Processor Local APIC */
			if (l < 8) {
				ok = false;
				why = "short Local APIC entry";
				break;
			}
			id = e[3];
			enabled = get32(e + 4) & 1;
			break;
		case 9: /* Processor Local x2APIC */
			if (l < 16) {
				ok = false;
				why = "short x2APIC entry";
				break;
			}
			id = get32(e + 4);
			enabled = get32(e + 8) & 1;
			break;
		case 1: /* I/O APIC */
			if (l < 12) {
				ok = false;
				why = "short IOAPIC entry";
			} else if (acpi.nioapic < MAX_IOAPICS) {
				int n = acpi.nioapic++;
				acpi.ioapic[n].id = e[2];
				acpi.ioapic[n].addr = get32(e + 4);
				acpi.ioapic[n].gsi_base = get32(e + 8);
			}
			break;
		case 2: /* Interrupt Source Override */
			if (l < 10) {
				ok = false;
				why = "short ISO entry";
			} else if (acpi.niso < MAX_ISOS) {
				int n = acpi.niso++;
				acpi.iso[n].src = e[3];
				acpi.iso[n].gsi = get32(e + 4);
				acpi.iso[n].flags = get16(e + 8);
			}
			break;
		case 5: /* Local APIC Address Override */
			if (l >= 12)
				acpi.lapic_addr = get64(e + 4);
			break;
		}
		if ((type == 0 || type == 9) && enabled) {
			for (int k = 0; k < acpi.ncpus; k++)
				if (acpi.apic_id[k] == id) {
					ok = false;
					why = "duplicate APIC id";
				}
			if (acpi.ncpus < MAX_CPUS)
				acpi.apic_id[acpi.ncpus] = id;
			acpi.ncpus++;
		}
		i += l;
	}
	check(ok, "MADT: entries well-formed%s%s", *why ? " # " : "", why);

	bool cpus_ok = acpi.ncpus >= 1 && acpi.ncpus <= MAX_CPUS &&
		       (opts.vcpus < 0 || acpi.ncpus == opts.vcpus);
	char exp[32] = "";
	if (opts.vcpus >= 0)
		snprintf(exp, sizeof(exp), ", expected %d", opts.vcpus);
	check(cpus_ok, "MADT has %d enabled CPU(s)%s", acpi.ncpus, exp);

	u32 a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	u32 bsp = b >> 24;
	bool found = false;
	for (int k = 0; k < acpi.ncpus && k < MAX_CPUS; k++)
		found |= acpi.apic_id[k] == bsp;
	check(found, "MADT lists the boot CPU's APIC id %u (CPUID.1:EBX)", bsp);

	/* IOAPICs: reachable, their version register answers, GSI ranges
	 * disjoint.  Reading the IOAPIC is two MMIO exits; cheap. */
	ok = acpi.nioapic >= 1;
	why = ok ? "" : "no IOAPIC";
	u32 lo[MAX_IOAPICS], hi[MAX_IOAPICS];
	for (int k = 0; k < acpi.nioapic; k++) {
		u32 base = acpi.ioapic[k].addr;
		if (!base || !phys_ok(base, 0x20)) {
			ok = false;
			why = "IOAPIC address outside the identity map";
			continue;
		}
		mmio_write32(base, 1); /* IOAPICVER */
		u32 ver = mmio_read32(base + 0x10);
		u32 n = ((ver >> 16) & 0xff) + 1;
		if (ver == 0xffffffff || ver == 0 || n < 16) {
			ok = false;
			why = "IOAPIC version register reads junk";
		}
		lo[k] = acpi.ioapic[k].gsi_base;
		hi[k] = lo[k] + n;
		for (int j = 0; j < k; j++)
			if (lo[k] < hi[j] && lo[j] < hi[k]) {
				ok = false;
				why = "IOAPIC GSI ranges overlap";
			}
		if (!quiet)
			kprintf("# IOAPIC id %u at 0x%x: version 0x%x, GSI %u-%u\n",
				acpi.ioapic[k].id, base, ver & 0xff, lo[k],
				hi[k] - 1);
	}
	check(ok, "MADT has %d IOAPIC(s) that answer%s%s", acpi.nioapic,
	      *why ? " # " : "", why);
}

/* ---- AML scanner (ACPI 6.5 §20) ---- */
#define AML_MAX_DEPTH 24

struct aml_dev {
	char name[5];
	char hid[16];
	const u8 *crs;
	u32 crs_len;
	bool crs_seen;
};

/* PkgLength (§20.2.4): total length, counting its own bytes. */
static bool pkg_length(const u8 *p, u32 avail, u32 *len, u32 *nb)
{
	if (!avail)
		return false;
	u32 n = p[0] >> 6;
	if (n + 1 > avail)
		return false;
	if (!n) {
		*len = p[0] & 0x3f;
	} else {
		if (p[0] & 0x30) /* bits 4-5 reserved when more bytes follow */
			return false;
		u32 l = p[0] & 0x0f;
		for (u32 i = 0; i < n; i++)
			l |= (u32)p[1 + i] << (4 + 8 * i);
		*len = l;
	}
	*nb = n + 1;
	return *len >= *nb;
}

static bool lead_char(u8 c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(u8 c)
{
	return lead_char(c) || (c >= '0' && c <= '9');
}

/* NameString (§20.2.2); returns the last NameSeg in seg ("" for NullName). */
static bool name_string(const u8 *p, u32 avail, char seg[5], u32 *nb)
{
	u32 i = 0, nsegs;

	while (i < avail && (p[i] == '\\' || p[i] == '^'))
		i++;
	if (i >= avail)
		return false;
	if (p[i] == 0x00) { /* NullName */
		seg[0] = '\0';
		*nb = i + 1;
		return true;
	}
	if (p[i] == 0x2e) { /* DualNamePrefix */
		nsegs = 2;
		i++;
	} else if (p[i] == 0x2f) { /* MultiNamePrefix SegCount */
		if (i + 1 >= avail || !p[i + 1])
			return false;
		nsegs = p[i + 1];
		i += 2;
	} else {
		nsegs = 1;
	}
	if ((u64)i + 4ull * nsegs > avail)
		return false;
	for (u32 s = 0; s < nsegs; s++) {
		const u8 *q = p + i + 4 * s;
		if (!lead_char(q[0]) || !name_char(q[1]) || !name_char(q[2]) ||
		    !name_char(q[3]))
			return false;
	}
	memcpy(seg, p + i + 4 * (nsegs - 1), 4);
	seg[4] = '\0';
	*nb = i + 4 * nsegs;
	return true;
}

/* Integer constants (§20.2.3): value and encoded length. */
static bool aml_int(const u8 *p, u32 avail, u64 *v, u32 *nb)
{
	if (!avail)
		return false;
	switch (p[0]) {
	case 0x00: *v = 0; *nb = 1; return true;            /* ZeroOp */
	case 0x01: *v = 1; *nb = 1; return true;            /* OneOp */
	case 0xff: *v = ~0ull; *nb = 1; return true;        /* OnesOp */
	case 0x0a: *nb = 2; break;                          /* BytePrefix */
	case 0x0b: *nb = 3; break;                          /* WordPrefix */
	case 0x0c: *nb = 5; break;                          /* DWordPrefix */
	case 0x0e: *nb = 9; break;                          /* QWordPrefix */
	default: return false;
	}
	if (*nb > avail)
		return false;
	*v = 0;
	for (u32 i = *nb - 1; i >= 1; i--)
		*v = *v << 8 | p[i];
	return true;
}

/* Length of a DataRefObject after a Name(): integer, string, buffer,
 * package; false for anything else. */
static bool data_object_len(const u8 *p, u32 avail, u32 *len)
{
	u64 v;
	u32 plen, nb;

	if (!avail)
		return false;
	if (aml_int(p, avail, &v, len))
		return true;
	switch (p[0]) {
	case 0x0d: /* String: ASCII up to NUL */
		for (u32 i = 1; i < avail; i++)
			if (!p[i]) {
				*len = i + 1;
				return true;
			}
		return false;
	case 0x11: /* Buffer */
	case 0x12: /* Package */
	case 0x13: /* VarPackage */
		if (!pkg_length(p + 1, avail - 1, &plen, &nb) || plen > avail - 1)
			return false;
		*len = 1 + plen;
		return true;
	}
	return false;
}

static void aml_walk(const u8 *p, u32 len, int depth, struct aml_dev *dev);
static void device_done(struct aml_dev *d);

static void aml_name(const char *seg, const u8 *o, u32 olen,
		     struct aml_dev *dev)
{
	u32 plen, nb, ilen;
	u64 v;

	if (dev && !strncmp(seg, "_HID", 4) && o[0] == 0x0d) {
		u32 n = olen - 2 < sizeof(dev->hid) - 1 ? olen - 2
							 : sizeof(dev->hid) - 1;
		memcpy(dev->hid, o + 1, n);
		dev->hid[n] = '\0';
	} else if (dev && !strncmp(seg, "_CRS", 4)) {
		dev->crs_seen = true;
		/* Buffer: BufferOp PkgLength BufferSize ByteList */
		if (o[0] != 0x11 || !pkg_length(o + 1, olen - 1, &plen, &nb))
			return;
		u32 at = 1 + nb;
		if (!aml_int(o + at, olen - at, &v, &ilen))
			return;
		at += ilen;
		u32 avail = olen - at;
		dev->crs = o + at;
		dev->crs_len = v < avail ? (u32)v : avail;
	} else if (!strncmp(seg, "_S5_", 4) && o[0] == 0x12) {
		/* Package: PackageOp PkgLength NumElements {SLP_TYPa, ...} */
		if (!pkg_length(o + 1, olen - 1, &plen, &nb))
			return;
		u32 at = 1 + nb + 1;
		if (at > olen || !o[at - 1] || !aml_int(o + at, olen - at, &v, &ilen))
			return;
		acpi.s5_found = true;
		acpi.slp_typ = (u8)v;
	}
}

static void aml_walk(const u8 *p, u32 len, int depth, struct aml_dev *dev)
{
	u32 plen, nb, nn, dl;
	char seg[5];

	if (depth > AML_MAX_DEPTH)
		return;
	for (u32 i = 0; i < len;) {
		u8 op = p[i];
		u32 rest = len - i;

		if (op == 0x5b && rest >= 2) {
			u8 op2 = p[i + 1];
			if (op2 == 0x80) { /* OpRegion: name, space, 2 TermArgs */
				u64 v;
				u32 at = i + 2;
				if (!name_string(p + at, len - at, seg, &nn)) {
					i++;
					continue;
				}
				at += nn + 1;
				for (int k = 0; k < 2 && at < len; k++) {
					if (!aml_int(p + at, len - at, &v, &nb))
						break;
					at += nb;
				}
				i = at < len ? at : len;
				continue;
			}
			/* Field, Device, Processor, PowerRes, ThermalZone,
			 * IndexField, BankField: ExtOp PkgLength ... */
			if (op2 == 0x81 || (op2 >= 0x82 && op2 <= 0x87)) {
				if (!pkg_length(p + i + 2, rest - 2, &plen, &nb) ||
				    plen > rest - 2) {
					i++;
					continue;
				}
				u32 end = i + 2 + plen, body = i + 2 + nb;
				if (op2 == 0x82 &&
				    name_string(p + body, end - body, seg, &nn)) {
					struct aml_dev d = { 0 };
					memcpy(d.name, seg, sizeof(d.name));
					aml_walk(p + body + nn, end - body - nn,
						 depth + 1, &d);
					device_done(&d);
				}
				i = end;
				continue;
			}
			i++;
			continue;
		}
		if (op == 0x10) { /* Scope: PkgLength NameString TermList */
			if (!pkg_length(p + i + 1, rest - 1, &plen, &nb) ||
			    plen > rest - 1) {
				i++;
				continue;
			}
			u32 end = i + 1 + plen, body = i + 1 + nb;
			if (name_string(p + body, end - body, seg, &nn))
				aml_walk(p + body + nn, end - body - nn, depth + 1,
					 NULL);
			i = end;
			continue;
		}
		if (op == 0x14 || op == 0xa0 || op == 0xa1 || op == 0xa2) {
			/* Method, If, Else, While: not evaluated, skipped. */
			if (!pkg_length(p + i + 1, rest - 1, &plen, &nb) ||
			    plen > rest - 1) {
				i++;
				continue;
			}
			i += 1 + plen;
			continue;
		}
		if (op == 0x08) { /* Name: NameString DataRefObject */
			if (!name_string(p + i + 1, rest - 1, seg, &nn)) {
				i++;
				continue;
			}
			u32 q = i + 1 + nn;
			if (q >= len || !data_object_len(p + q, len - q, &dl)) {
				i = q;
				continue;
			}
			aml_name(seg, p + q, dl, dev);
			i = q + dl;
			continue;
		}
		i++;
	}
}

/* ---- _CRS resource template (ACPI 6.5 §6.4) ---- */
static const char *parse_crs(const u8 *r, u32 len, struct vmmio *v)
{
	int nmem = 0, nirq = 0;

	for (u32 i = 0; i < len;) {
		u8 tag = r[i];
		if (tag & 0x80) { /* large item: tag, u16 length, data */
			if (len - i < 3)
				return "truncated large resource";
			u32 l = get16(r + i + 1);
			const u8 *b = r + i + 3;
			if (l > len - i - 3)
				return "resource runs past the buffer";
			switch (tag) {
			case 0x86: /* Memory32Fixed: info, base, length */
				if (l < 9)
					return "short Memory32Fixed";
				v->base = get32(b + 1);
				v->size = get32(b + 5);
				nmem++;
				break;
			case 0x85: /* Memory32: info, min, max, align, length */
				if (l < 17)
					return "short Memory32";
				v->base = get32(b + 1);
				v->size = get32(b + 13);
				nmem++;
				break;
			case 0x87: /* DWord Address Space */
				if (l < 23)
					return "short DWord address space";
				if (b[0] == 0) { /* memory range */
					v->base = get32(b + 7);
					v->size = get32(b + 19);
					nmem++;
				}
				break;
			case 0x8a: /* QWord Address Space */
				if (l < 43)
					return "short QWord address space";
				if (b[0] == 0) {
					v->base = get64(b + 11);
					v->size = get64(b + 35);
					nmem++;
				}
				break;
			case 0x89: /* Extended Interrupt: flags, count, u32s */
				if (l < 6 || !b[1] || 2u + 4u * b[1] > l)
					return "bad Extended Interrupt";
				v->edge = b[0] & 0x02;
				v->active_low = b[0] & 0x04;
				v->irq = get32(b + 2);
				nirq++;
				break;
			}
			i += 3 + l;
		} else { /* small item: tag bits 6-3, length bits 2-0 */
			u32 l = tag & 7;
			u8 name = (tag >> 3) & 0xf;
			if (l > len - i - 1)
				return "small resource runs past the buffer";
			if (name == 0x0f) { /* End Tag */
				if (nmem != 1)
					return nmem ? "more than one memory range"
						    : "no memory range";
				if (nirq < 1)
					return "no interrupt";
				return NULL;
			}
			if (name == 0x04 && l >= 2) { /* IRQ: mask, [flags] */
				u16 mask = get16(r + i + 1);
				if (!mask || (mask & (mask - 1)))
					return "IRQ descriptor without exactly one IRQ";
				v->irq = (u32)__builtin_ctz(mask);
				v->edge = l < 3 || (r[i + 3] & 1);
				v->active_low = l >= 3 && (r[i + 3] & 8);
				nirq++;
			}
			i += 1 + l;
		}
	}
	return "no End Tag";
}

static void device_done(struct aml_dev *d)
{
	if (strncmp(d->hid, "LNRO0005", 9))
		return;
	if (acpi.ndev >= MAX_VDEVS) {
		acpi.ndev++; /* counted, not kept: reported as too many */
		return;
	}
	struct vmmio *v = &acpi.dev[acpi.ndev++];
	memcpy(v->name, d->name, sizeof(v->name));
	if (!d->crs)
		v->crs_error = d->crs_seen ? "_CRS is not a Buffer" : "no _CRS";
	else
		v->crs_error = parse_crs(d->crs, d->crs_len, v);
	if (!v->crs_error && v->size < 0x100)
		v->crs_error = "register window smaller than 0x100";
	if (!v->crs_error && !phys_ok(v->base, v->size))
		v->crs_error = "register window outside the identity map";
	v->crs_ok = !v->crs_error;
}

/* ---- the whole walk ---- */
struct table_ref {
	char sig[5];
	u64 addr;
	u32 len;
};

static void check_devices(void)
{
	char exp[48] = "";
	int n = acpi.ndev;
	bool ok = n <= MAX_VDEVS;

	if (opts.devices >= 0) {
		ok &= n == opts.devices;
		snprintf(exp, sizeof(exp), ", expected %d", opts.devices);
	} else if (opts.nmmio >= 0) {
		ok &= n == opts.nmmio;
		snprintf(exp, sizeof(exp), ", expected %d (probe.mmio)",
			 opts.nmmio);
	}
	check(ok, "DSDT: found %d virtio-mmio device(s) (_HID LNRO0005)%s", n,
	      exp);
	if (n > MAX_VDEVS)
		n = MAX_VDEVS;

	bool distinct = true;
	for (int i = 0; i < n; i++) {
		struct vmmio *v = &acpi.dev[i];
		if (v->crs_ok)
			check(true,
			      "virtio-mmio %s: _CRS base 0x%llx size 0x%llx irq %u (%s, active-%s)",
			      v->name, (unsigned long long)v->base,
			      (unsigned long long)v->size, v->irq,
			      v->edge ? "edge" : "level",
			      v->active_low ? "low" : "high");
		else
			check(false, "virtio-mmio %s: _CRS # %s", v->name,
			      v->crs_error);
		for (int j = 0; j < i; j++) {
			struct vmmio *w = &acpi.dev[j];
			if (v->crs_ok && w->crs_ok &&
			    ((v->base < w->base + w->size &&
			      w->base < v->base + v->size) ||
			     v->irq == w->irq))
				distinct = false;
		}
	}
	if (n > 1)
		check(distinct, "virtio-mmio devices have disjoint windows and distinct IRQs");

	for (int k = 0; k < opts.nmmio; k++) {
		u64 base = opts.mmio[k].base;
		u32 irq = opts.mmio[k].irq;
		int found = -1;
		for (int i = 0; i < n; i++)
			if (acpi.dev[i].crs_ok && acpi.dev[i].base == base)
				found = i;
		if (found < 0)
			check(false, "device at base 0x%llx irq %u matches cmdline # not in the DSDT",
			      (unsigned long long)base, irq);
		else
			check(acpi.dev[found].irq == irq,
			      "device at base 0x%llx irq %u matches cmdline # DSDT says irq %u",
			      (unsigned long long)base, irq, acpi.dev[found].irq);
	}
}

static void acpi_walk(void)
{
	struct table_ref tabs[64];
	int ntabs = 0;
	const char *why;
	u32 len;

	find_rsdp();
	if (!acpi.rsdp_ok)
		return;

	const u8 *r = (const u8 *)(uintptr_t)acpi.rsdp;
	bool x = acpi.rsdp_rev >= 2 && get64(r + 24);
	u64 root_addr = x ? get64(r + 24) : get32(r + 16);
	const char *root_sig = x ? "XSDT" : "RSDT";
	u32 esz = x ? 8 : 4;
	const u8 *root = sdt_check(root_addr, &len, &why);
	if (root && memcmp(root, root_sig, 4))
		why = "wrong signature";
	if (root && !why && (len - SDT_HDR_LEN) % esz)
		why = "length is not header + whole entries";
	if (!check(root && !why, "%s at 0x%llx: length %u, checksum%s%s", root_sig,
		   (unsigned long long)root_addr, len, why ? " # " : "",
		   why ? why : ""))
		return;
	if (!x)
		check(false, "RSDP revision %u: no XSDT (ACPI 2.0+ expected)",
		      acpi.rsdp_rev);
	why = placement(root_addr, len);
	check(!why, "%s placement in the e820 map%s%s", root_sig,
	      why ? " # " : "", why ? why : "");

	u32 n = (len - SDT_HDR_LEN) / esz;
	for (u32 i = 0; i < n; i++) {
		const u8 *e = root + SDT_HDR_LEN + i * esz;
		u64 a = x ? get64(e) : get32(e);
		u32 tl = 0;
		const u8 *t = sdt_check(a, &tl, &why);
		char sig[5] = "????";
		if (t || (phys_ok(a, 4) && a))
			memcpy(sig, (const void *)(uintptr_t)a, 4);
		const char *pl = t ? placement(a, tl) : NULL;
		check(t && !pl, "ACPI table %s at 0x%llx: length %u, checksum%s%s%s",
		      sig, (unsigned long long)a, tl, why || pl ? " # " : "",
		      why ? why : "", pl ? pl : "");
		if (t && ntabs < (int)ARRAY_SIZE(tabs)) {
			memcpy(tabs[ntabs].sig, sig, 5);
			tabs[ntabs].addr = a;
			tabs[ntabs].len = tl;
			ntabs++;
		}
	}

	const u8 *fadt = NULL, *madt = NULL;
	u32 fadt_len = 0, madt_len = 0;
	bool dup = false;
	for (int i = 0; i < ntabs; i++) {
		const u8 *t = (const u8 *)(uintptr_t)tabs[i].addr;
		if (!memcmp(tabs[i].sig, "FACP", 4)) {
			dup |= fadt != NULL;
			fadt = t;
			fadt_len = tabs[i].len;
		} else if (!memcmp(tabs[i].sig, "APIC", 4)) {
			dup |= madt != NULL;
			madt = t;
			madt_len = tabs[i].len;
		} else if (!memcmp(tabs[i].sig, "DSDT", 4)) {
			check(false, "DSDT listed in the %s (it belongs in the FADT only)",
			      root_sig);
		}
	}
	check(fadt && madt && !dup, "%s lists FACP and APIC exactly once",
	      root_sig);
	if (madt) {
		acpi.madt = (uintptr_t)madt;
		parse_madt(madt, madt_len);
	}
	if (!fadt)
		return;
	acpi.fadt = (uintptr_t)fadt;
	parse_fadt(fadt, fadt_len);

	const u8 *dsdt = sdt_check(acpi.dsdt, &len, &why);
	if (dsdt && memcmp(dsdt, "DSDT", 4))
		why = "wrong signature";
	const char *pl = dsdt && !why ? placement(acpi.dsdt, len) : NULL;
	if (!check(dsdt && !why && !pl, "ACPI table DSDT at 0x%llx: length %u, checksum%s%s%s",
		   (unsigned long long)acpi.dsdt, len, why || pl ? " # " : "",
		   why ? why : "", pl ? pl : ""))
		return;
	aml_walk(dsdt + SDT_HDR_LEN, len - SDT_HDR_LEN, 0, NULL);
	for (int i = 0; i < ntabs; i++)
		if (!memcmp(tabs[i].sig, "SSDT", 4))
			aml_walk((const u8 *)(uintptr_t)tabs[i].addr + SDT_HDR_LEN,
				 tabs[i].len - SDT_HDR_LEN, 0, NULL);

	check(acpi.s5_found, "DSDT has \\_S5 (SLP_TYPa=%u)", acpi.slp_typ);
	check_devices();
}

void acpi_probe(const struct e820_entry *map, int n)
{
	e820 = map;
	ne820 = n;
	quiet = false;
	acpi_walk();
}

void acpi_find_quiet(void)
{
	quiet = true;
	if (phys_ok(boot.bp_addr, 4096))
		acpi_walk();
	quiet = false;
}

/* ---- power off ---- */
static void gas_write(const struct gas *g, u64 v)
{
	/* Access Size (§5.2.3.2): 1 byte .. 4 qword; 0 = use bit width. */
	u32 bytes = g->access_size >= 1 && g->access_size <= 4
			    ? 1u << (g->access_size - 1)
			    : (g->bit_width + 7u) / 8;

	v <<= g->bit_offset;
	if (g->space == 1) {
		u16 port = (u16)g->addr;
		if (bytes >= 4)
			outl(port, (u32)v);
		else if (bytes == 2)
			outw(port, (u16)v);
		else
			outb(port, (u8)v);
	} else if (g->space == 0) {
		uintptr_t a = (uintptr_t)g->addr;
		if (bytes >= 8)
			*(volatile u64 *)a = v;
		else if (bytes == 4)
			*(volatile u32 *)a = (u32)v;
		else if (bytes == 2)
			*(volatile u16 *)a = (u16)v;
		else
			*(volatile u8 *)a = (u8)v;
	}
}

void acpi_poweroff(void)
{
	/* Without \_S5 there is no documented SLP_TYP; 5 is what QEMU's GED
	 * and most VMMs use for S5. */
	u8 typ = acpi.s5_found ? acpi.slp_typ : 5;

	if (!acpi.sleep_ok)
		return;
	irq_disable();
	if (acpi.sleep_ctl.addr &&
	    (acpi.sleep_ctl.space == 0 || acpi.sleep_ctl.space == 1)) {
		/* ACPI 6.5 §4.8.3.7 Sleep Control Register: SLP_TYP bits 4:2,
		 * SLP_EN bit 5. */
		gas_write(&acpi.sleep_ctl, (u64)(typ & 7) << 2 | 1u << 5);
	} else if (acpi.pm1a_cnt) {
		/* §4.8.3.2.1 PM1 Control: SLP_TYP bits 12:10, SLP_EN bit 13. */
		outw((u16)acpi.pm1a_cnt, (u16)((typ & 7) << 10 | 1u << 13));
	}
	/* The VMM may take a moment (QEMU handles the request
	 * asynchronously); give it 2 s before declaring failure. */
	u64 dl = deadline_ms(2000);
	while (!expired(dl))
		cpu_relax();
}
