// SPDX-License-Identifier: MIT
/*
 * ACPI tables for the x86 guest (ACPI 6.x): RSDP rev 2, XSDT, FADT in
 * hardware-reduced mode, MADT and a DSDT written with aml.c.  Everything is
 * built into one host buffer laid out for guest address X86_ACPI_BASE, so
 * pointers and checksums are final before the copy into guest memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aml.h"
#include "le.h"
#include "x86.h"

#define SDT_HDR_LEN 36
#define RSDP_LEN 36
#define FADT_LEN 276 /* revision 6 (§5.2.9 Table 5.9) */
#define FADT_REVISION 6
#define FADT_MINOR 3
#define MADT_REVISION 5

/* FADT fixed feature flags (§5.2.9 Table 5.10) */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
/* IA-PC boot architecture flags (§5.2.9.3 Table 5.11) */
#define FADT_BOOT_VGA_NOT_PRESENT (1u << 2)
#define FADT_BOOT_MSI_NOT_SUPPORTED (1u << 3)
#define FADT_BOOT_CMOS_RTC_NOT_PRESENT (1u << 5)

/* Generic Address Structure (§5.2.3.2) */
#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1

#define CREATOR_ID "SMVM"
#define CREATOR_REV 1
#define OEM_REVISION 1

static uint8_t checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return (uint8_t)-s;
}

/* Copy `s` into a fixed-width field, padded with spaces (ACPI ids are not
 * NUL-terminated). */
static void put_id(uint8_t *dst, const char *s, size_t width)
{
	size_t n = strnlen(s, width);

	memset(dst, ' ', width);
	memcpy(dst, s, n);
}

static void put_gas(uint8_t *p, uint8_t space, uint8_t bits, uint8_t access,
		    uint64_t addr)
{
	p[0] = space;
	p[1] = bits;
	p[2] = 0; /* bit offset */
	p[3] = access;
	le_put64(p + 4, addr);
}

struct acpi_ctx {
	const struct x86_platform *p;
	struct x86_acpi_blob *b;
	size_t used;
};

/* Reserve `len` bytes (16-byte aligned start) for table `sig`. */
static uint8_t *acpi_alloc(struct acpi_ctx *c, const char *sig, size_t len,
			   size_t *off)
{
	size_t start = (c->used + 15) & ~(size_t)15;
	struct x86_acpi_table *t;

	if (start > X86_ACPI_SIZE || len > X86_ACPI_SIZE - start ||
	    c->b->nt == X86_ACPI_MAX_TABLES)
		return NULL;
	t = &c->b->t[c->b->nt++];
	memcpy(t->sig, sig, 4);
	t->sig[4] = 0;
	t->off = start;
	t->len = len;
	c->used = start + len;
	*off = start;
	return c->b->data + start;
}

static void sdt_header(struct acpi_ctx *c, uint8_t *h, const char *sig,
		       uint32_t len, uint8_t rev)
{
	memcpy(h, sig, 4);
	le_put32(h + 4, len);
	h[8] = rev;
	h[9] = 0; /* checksum, set by sdt_finish */
	put_id(h + 10, c->p->oem_id ? c->p->oem_id : "SMVMM", 6);
	put_id(h + 16, c->p->oem_table_id ? c->p->oem_table_id : "SMVMMVM", 8);
	le_put32(h + 24, OEM_REVISION);
	memcpy(h + 28, CREATOR_ID, 4);
	le_put32(h + 32, CREATOR_REV);
}

static void sdt_finish(uint8_t *h, size_t len)
{
	h[9] = 0;
	h[9] = checksum(h, len);
}

static int build_dsdt(const struct x86_platform *p, struct aml *a)
{
	size_t sb, dev, pkg;
	struct aml r;

	/*
	 * \_S5: the SLP_TYP value OSPM writes to the sleep control register
	 * for soft-off (§7.4.2); the second element is SLP_TYPb, unused here.
	 */
	aml_name(a, "\\_S5_");
	pkg = aml_package_begin(a, 2);
	aml_integer(a, X86_PM_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_pkg_end(a, pkg);

	sb = aml_scope_begin(a, "\\_SB_");

	if (!p->no_com1) {
		/* The PC's first serial port (PNP0501: 16550A-compatible). */
		dev = aml_device_begin(a, "COM1");
		aml_name(a, "_HID");
		aml_eisaid(a, "PNP0501");
		aml_name(a, "_UID");
		aml_integer(a, 0);
		aml_name(a, "_CRS");
		aml_init(&r);
		aml_res_io16(&r, X86_COM1_PORT, X86_COM1_PORT, 0, 8);
		aml_res_irq_noflags(&r, 1u << X86_COM1_IRQ);
		aml_resource_template(a, &r);
		aml_free(&r);
		aml_pkg_end(a, dev);
	}

	/*
	 * pvpanic: Linux's pvpanic-mmio driver binds _HID "QEMU0001" with an
	 * I/O or memory resource and reports a panic through it (QEMU
	 * describes its ISA pvpanic the same way).
	 */
	dev = aml_device_begin(a, "PEVT");
	aml_name(a, "_HID");
	aml_string(a, "QEMU0001");
	aml_name(a, "_CRS");
	aml_init(&r);
	aml_res_io16(&r, X86_PVPANIC_PORT, X86_PVPANIC_PORT, 1, 1);
	aml_resource_template(a, &r);
	aml_free(&r);
	aml_pkg_end(a, dev);

	/*
	 * virtio-mmio: Linux's virtio_mmio driver binds ACPI devices with
	 * _HID "LNRO0005" (drivers/virtio/virtio_mmio.c; QEMU's microvm and
	 * Firecracker describe them the same way): one window and one
	 * edge-triggered interrupt each.
	 */
	for (unsigned i = 0; i < p->ndev; i++) {
		const struct x86_virtio_dev *d = &p->dev[i];
		char name[16];

		snprintf(name, sizeof(name), "VR%02X", i & 0xff);
		dev = aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "LNRO0005");
		aml_name(a, "_UID");
		aml_integer(a, i);
		aml_name(a, "_CRS");
		aml_init(&r);
		aml_res_mem32_fixed(&r, 1, (uint32_t)d->base, d->size);
		aml_res_ext_irq(&r, 1, 0, d->irq);
		aml_resource_template(a, &r);
		aml_free(&r);
		aml_pkg_end(a, dev);
	}

	aml_pkg_end(a, sb);
	return a->err;
}

int x86_acpi_build(const struct x86_platform *p, struct x86_acpi_blob *out)
{
	struct acpi_ctx c = { .p = p, .b = out };
	size_t rsdp_off, xsdt_off, fadt_off, madt_off, dsdt_off, madt_len;
	uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt, *e;
	uint64_t base = X86_ACPI_BASE;
	struct aml a;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!p->vcpus || p->vcpus > 255 || p->ndev > X86_ACPI_MAX_VIRTIO ||
	    (p->ndev && !p->dev))
		return -EINVAL;
	for (unsigned i = 0; i < p->ndev; i++) {
		const struct x86_virtio_dev *d = &p->dev[i];

		if (!d->size || d->base > UINT32_MAX ||
		    d->size > UINT32_MAX - d->base + 1 || d->irq >= 24)
			return -EINVAL;
	}

	aml_init(&a);
	ret = build_dsdt(p, &a);
	if (ret)
		goto err_aml;

	out->data = calloc(1, X86_ACPI_SIZE);
	if (!out->data) {
		ret = -ENOMEM;
		goto err_aml;
	}
	out->gpa = base;
	ret = -E2BIG;

	/* §5.2.5.3: RSDP first, so it sits at the scanned 0xe0000. */
	rsdp = acpi_alloc(&c, "RSDP", RSDP_LEN, &rsdp_off);
	xsdt = acpi_alloc(&c, "XSDT", SDT_HDR_LEN + 2 * 8, &xsdt_off);
	fadt = acpi_alloc(&c, "FACP", FADT_LEN, &fadt_off);
	madt_len = SDT_HDR_LEN + 8 + 8 * (size_t)p->vcpus + 12;
	madt = acpi_alloc(&c, "APIC", madt_len, &madt_off);
	dsdt = acpi_alloc(&c, "DSDT", SDT_HDR_LEN + a.len, &dsdt_off);
	if (!rsdp || !xsdt || !fadt || !madt || !dsdt)
		goto err_data;

	/* DSDT (§5.2.11.1): revision 2 = 64-bit integers. */
	sdt_header(&c, dsdt, "DSDT", SDT_HDR_LEN + a.len, 2);
	memcpy(dsdt + SDT_HDR_LEN, a.buf, a.len);
	sdt_finish(dsdt, SDT_HDR_LEN + a.len);

	/* MADT (§5.2.12) */
	sdt_header(&c, madt, "APIC", madt_len, MADT_REVISION);
	le_put32(madt + 36, (uint32_t)X86_LAPIC_ADDR);
	le_put32(madt + 40, 0); /* flags: no PCAT_COMPAT dual 8259 setup */
	e = madt + 44;
	for (uint32_t i = 0; i < p->vcpus; i++, e += 8) {
		/* §5.2.12.2 Processor Local APIC: UID = APIC id = index */
		e[0] = 0;
		e[1] = 8;
		e[2] = i;
		e[3] = i;
		le_put32(e + 4, 1); /* Enabled */
	}
	/* §5.2.12.3 I/O APIC: id after the local APICs, GSI base 0 */
	e[0] = 1;
	e[1] = 12;
	e[2] = p->vcpus;
	e[3] = 0;
	le_put32(e + 4, (uint32_t)X86_IOAPIC_ADDR);
	le_put32(e + 8, 0);
	sdt_finish(madt, madt_len);

	/* FADT (§5.2.9), hardware-reduced (§4.1): no PM1/GPE blocks, no FACS. */
	sdt_header(&c, fadt, "FACP", FADT_LEN, FADT_REVISION);
	le_put32(fadt + 36, 0);  /* FIRMWARE_CTRL */
	le_put32(fadt + 40, 0);  /* DSDT: zero because X_DSDT is set */
	fadt[45] = 0;         /* Preferred_PM_Profile: unspecified */
	le_put16(fadt + 46, 0);  /* SCI_INT: none (HW-reduced) */
	le_put16(fadt + 109, FADT_BOOT_VGA_NOT_PRESENT |
			  FADT_BOOT_CMOS_RTC_NOT_PRESENT);
	le_put32(fadt + 112, FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP);
	put_gas(fadt + 116, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE,
		X86_PM_RESET_PORT);
	fadt[128] = X86_PM_RESET_VALUE;
	le_put16(fadt + 129, 0); /* ARM_BOOT_ARCH */
	fadt[131] = FADT_MINOR;
	le_put64(fadt + 132, 0); /* X_FIRMWARE_CTRL */
	le_put64(fadt + 140, base + dsdt_off);
	put_gas(fadt + 244, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE,
		X86_PM_SLEEP_CTL_PORT);
	put_gas(fadt + 256, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE,
		X86_PM_SLEEP_STS_PORT);
	memcpy(fadt + 268, "SMVMM\0\0\0", 8); /* Hypervisor Vendor Identity */
	sdt_finish(fadt, FADT_LEN);

	/* XSDT (§5.2.8): FADT, MADT */
	sdt_header(&c, xsdt, "XSDT", SDT_HDR_LEN + 16, 1);
	le_put64(xsdt + 36, base + fadt_off);
	le_put64(xsdt + 44, base + madt_off);
	sdt_finish(xsdt, SDT_HDR_LEN + 16);

	/* RSDP (§5.2.5.3): revision 2, no RSDT, both checksums. */
	memcpy(rsdp, "RSD PTR ", 8);
	put_id(rsdp + 9, p->oem_id ? p->oem_id : "SMVMM", 6);
	rsdp[15] = 2;
	le_put32(rsdp + 16, 0);
	le_put32(rsdp + 20, RSDP_LEN);
	le_put64(rsdp + 24, base + xsdt_off);
	rsdp[8] = checksum(rsdp, 20);
	rsdp[32] = checksum(rsdp, RSDP_LEN);

	out->size = c.used;
	out->rsdp_gpa = base + rsdp_off;
	aml_free(&a);
	return 0;

err_data:
	free(out->data);
	memset(out, 0, sizeof(*out));
err_aml:
	aml_free(&a);
	return ret;
}

void x86_acpi_free(struct x86_acpi_blob *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void x86_acpi_blob_free(struct x86_acpi_blob *b)
{
	x86_acpi_free(b);
}

const uint8_t *x86_acpi_find(const struct x86_acpi_blob *b, const char *sig,
			     size_t *len)
{
	for (unsigned i = 0; i < b->nt; i++) {
		if (!strcmp(b->t[i].sig, sig)) {
			if (len)
				*len = b->t[i].len;
			return b->data + b->t[i].off;
		}
	}
	return NULL;
}

int x86_acpi_install(struct gmem *m, const struct x86_acpi_blob *b,
		     uint64_t *rsdp_gpa)
{
	int ret;

	if (!b->data || !b->size)
		return -EINVAL;
	ret = gmem_write(m, b->gpa, b->data, b->size);
	if (ret)
		return ret;
	if (rsdp_gpa)
		*rsdp_gpa = b->rsdp_gpa;
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int x86_acpi_dump(const struct x86_platform *p, const char *dir, char *err,
		  size_t errlen)
{
	struct x86_acpi_blob b;
	char path[4096];
	int ret;

	ret = x86_acpi_build(p, &b);
	if (ret) {
		snprintf(err, errlen, "building ACPI tables: %s", strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < b.nt; i++) {
		int fd;

		if (snprintf(path, sizeof(path), "%s/%s.dat", dir, b.t[i].sig) >=
		    (int)sizeof(path)) {
			snprintf(err, errlen, "%s: path too long", dir);
			ret = -ENAMETOOLONG;
			goto err_blob;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto err_blob;
		}
		ret = write_all(fd, b.data + b.t[i].off, b.t[i].len);
		if (close(fd) && !ret)
			ret = -errno;
		if (ret) {
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
			goto err_blob;
		}
	}
	ret = 0;
err_blob:
	x86_acpi_blob_free(&b);
	return ret;
}
