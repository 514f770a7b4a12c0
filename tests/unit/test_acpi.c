// SPDX-License-Identifier: MIT
/*
 * ACPI tables (core/arch/x86_64/acpi.c, aml.c): structure, checksums and
 * pointers checked here; the tables are then disassembled with ACPICA's
 * `iasl -d` (acpica-tools), an independent parser, and the output searched
 * for what Linux will look for.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/x86_64/aml.h"
#include "arch/x86_64/x86.h"

static uint32_t rd32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static struct x86_virtio_dev devs[8];

static void make_devs(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		devs[i].id = "dev";
		devs[i].base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_STRIDE;
		devs[i].size = X86_VIRTIO_MMIO_SIZE;
		devs[i].irq = 5 + i;
	}
}

/* Table at guest address gpa inside the blob. */
static const uint8_t *at(const struct x86_acpi_blob *b, uint64_t gpa,
			 size_t min_len)
{
	ck_assert_uint_ge(gpa, b->gpa);
	ck_assert_uint_le(gpa - b->gpa + min_len, b->size);
	return b->data + (gpa - b->gpa);
}

static size_t count(const uint8_t *p, size_t n, const char *needle)
{
	size_t c = 0, l = strlen(needle);

	for (size_t i = 0; i + l <= n; i++)
		if (!memcmp(p + i, needle, l))
			c++;
	return c;
}

static void check_tables(uint32_t vcpus, unsigned ndev)
{
	struct x86_platform p = { .vcpus = vcpus, .dev = devs, .ndev = ndev };
	struct x86_acpi_blob b;
	const uint8_t *rsdp, *xsdt, *fadt, *madt, *dsdt, *e, *end;
	size_t len;
	unsigned lapics = 0, ioapics = 0;

	make_devs(ndev);
	ck_assert_int_eq(x86_acpi_build(&p, &b), 0);
	ck_assert_uint_eq(b.gpa, X86_ACPI_BASE);
	ck_assert_uint_eq(b.rsdp_gpa, X86_ACPI_BASE);
	ck_assert_uint_le(b.size, X86_ACPI_SIZE);

	/* RSDP (ACPI 6.x §5.2.5.3) */
	rsdp = at(&b, b.rsdp_gpa, 36);
	ck_assert(!memcmp(rsdp, "RSD PTR ", 8));
	ck_assert_uint_eq(sum(rsdp, 20), 0);
	ck_assert_uint_eq(sum(rsdp, 36), 0);
	ck_assert_uint_eq(rsdp[15], 2);
	ck_assert_uint_eq(rd32(rsdp + 20), 36);
	ck_assert(!memcmp(rsdp + 9, "SMVMM ", 6));

	/* Every SDT: length and checksum; all 16-byte aligned */
	for (unsigned i = 0; i < b.nt; i++) {
		const uint8_t *t = b.data + b.t[i].off;

		ck_assert_uint_eq(b.t[i].off % 16, 0);
		if (!strcmp(b.t[i].sig, "RSDP"))
			continue;
		ck_assert(!memcmp(t, b.t[i].sig, 4));
		ck_assert_uint_eq(rd32(t + 4), b.t[i].len);
		ck_assert_msg(sum(t, b.t[i].len) == 0, "%s checksum", b.t[i].sig);
		ck_assert(!memcmp(t + 10, "SMVMM ", 6));
		ck_assert(!memcmp(t + 16, "SMVMMVM ", 8));
	}

	/* XSDT -> FACP, APIC */
	xsdt = at(&b, rd64(rsdp + 24), 36);
	ck_assert(!memcmp(xsdt, "XSDT", 4));
	ck_assert_uint_eq(rd32(xsdt + 4), 36 + 16);
	fadt = at(&b, rd64(xsdt + 36), 276);
	madt = at(&b, rd64(xsdt + 44), 44);
	ck_assert(!memcmp(fadt, "FACP", 4));
	ck_assert(!memcmp(madt, "APIC", 4));
	ck_assert_ptr_eq(fadt, x86_acpi_find(&b, "FACP", &len));
	ck_assert_uint_eq(len, 276);

	/* FADT: rev 6, HW-reduced, reset + sleep registers, X_DSDT */
	ck_assert_uint_eq(fadt[8], 6);
	ck_assert_uint_eq(rd32(fadt + 112) & (1u << 20), 1u << 20);
	ck_assert_uint_eq(rd32(fadt + 112) & (1u << 10), 1u << 10);
	ck_assert_uint_eq(fadt[116], 1); /* SystemIO */
	ck_assert_uint_eq(rd64(fadt + 120), X86_PM_RESET_PORT);
	ck_assert_uint_eq(fadt[128], X86_PM_RESET_VALUE);
	ck_assert_uint_eq(fadt[244], 1);
	ck_assert_uint_eq(fadt[245], 8);
	ck_assert_uint_eq(rd64(fadt + 248), X86_PM_SLEEP_CTL_PORT);
	ck_assert_uint_eq(rd64(fadt + 260), X86_PM_SLEEP_STS_PORT);
	dsdt = at(&b, rd64(fadt + 140), 36);
	ck_assert(!memcmp(dsdt, "DSDT", 4));
	ck_assert_uint_eq(rd32(fadt + 40), 0); /* 32-bit DSDT unused */

	/* MADT: one LAPIC per vCPU, one IOAPIC */
	ck_assert_uint_eq(rd32(madt + 36), X86_LAPIC_ADDR);
	end = madt + rd32(madt + 4);
	for (e = madt + 44; e < end; e += e[1]) {
		ck_assert_uint_ge(e[1], 2);
		ck_assert(e + e[1] <= end);
		if (e[0] == 0) {
			ck_assert_uint_eq(e[1], 8);
			ck_assert_uint_eq(e[3], lapics); /* APIC id = index */
			ck_assert_uint_eq(rd32(e + 4) & 1, 1);
			lapics++;
		} else if (e[0] == 1) {
			ck_assert_uint_eq(e[1], 12);
			ck_assert_uint_eq(e[2], vcpus);
			ck_assert_uint_eq(rd32(e + 4), X86_IOAPIC_ADDR);
			ck_assert_uint_eq(rd32(e + 8), 0);
			ioapics++;
		}
	}
	ck_assert(e == end);
	ck_assert_uint_eq(lapics, vcpus);
	ck_assert_uint_eq(ioapics, 1);

	/* DSDT: one LNRO0005 per device, COM1, _S5 */
	len = rd32(dsdt + 4);
	ck_assert_uint_eq(count(dsdt, len, "LNRO0005"), ndev);
	ck_assert_uint_eq(count(dsdt, len, "COM1"), 1);
	ck_assert_uint_eq(count(dsdt, len, "_S5_"), 1);

	x86_acpi_blob_free(&b);
	ck_assert_ptr_null(b.data);
}

START_TEST(test_tables_1cpu)
{
	for (unsigned n = 0; n <= 8; n++)
		check_tables(1, n);
}
END_TEST

START_TEST(test_tables_4cpu)
{
	for (unsigned n = 0; n <= 8; n++)
		check_tables(4, n);
}
END_TEST

START_TEST(test_tables_max)
{
	static struct x86_virtio_dev many[X86_ACPI_MAX_VIRTIO + 1];
	struct x86_platform p = { .vcpus = 255, .dev = many,
				  .ndev = X86_ACPI_MAX_VIRTIO };
	struct x86_acpi_blob b;

	for (unsigned i = 0; i <= X86_ACPI_MAX_VIRTIO; i++) {
		many[i].base = X86_VIRTIO_MMIO_BASE + i * X86_VIRTIO_MMIO_STRIDE;
		many[i].size = X86_VIRTIO_MMIO_SIZE;
		many[i].irq = 5 + i % 19;
	}
	/* 256 devices: the DSDT needs multi-byte PkgLengths */
	ck_assert_int_eq(x86_acpi_build(&p, &b), 0);
	ck_assert_uint_eq(sum(x86_acpi_find(&b, "DSDT", NULL),
			      rd32(x86_acpi_find(&b, "DSDT", NULL) + 4)), 0);
	x86_acpi_blob_free(&b);
	p.ndev++;
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(test_tables_invalid)
{
	struct x86_platform p = { .vcpus = 0 };
	struct x86_acpi_blob b;
	struct x86_virtio_dev d = { "x", 0xd0000000, 0x200, 24 };

	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
	p.vcpus = 256;
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
	p.vcpus = 1;
	p.dev = &d;
	p.ndev = 1;
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL); /* irq 24 */
	d.irq = 5;
	d.base = 0x100000000ULL; /* Memory32Fixed cannot say that */
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
	d.base = 0xfffff000;
	d.size = 0x2000; /* wraps past 4 GiB */
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
	d.size = 0;
	ck_assert_int_eq(x86_acpi_build(&p, &b), -EINVAL);
}
END_TEST

START_TEST(test_install)
{
	struct x86_platform p = { .vcpus = 2 };
	struct x86_acpi_blob b;
	struct gmem m;
	size_t ram = 2 << 20;
	uint8_t *mem = mmap(NULL, ram, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t rsdp = 0;

	ck_assert_ptr_ne(mem, MAP_FAILED);
	gmem_init(&m);
	ck_assert_int_ge(gmem_add_mapping(&m, 0, ram, mem, -1, 0), 0);
	ck_assert_int_eq(x86_acpi_build(&p, &b), 0);
	ck_assert_int_eq(x86_acpi_install(&m, &b, &rsdp), 0);
	ck_assert_uint_eq(rsdp, 0xe0000);
	ck_assert(!memcmp(mem + 0xe0000, b.data, b.size));
	/* Linux scans 0xe0000-0xfffff on 16-byte boundaries for the RSDP */
	ck_assert(!memcmp(mem + 0xe0000, "RSD PTR ", 8));
	x86_acpi_blob_free(&b);
	gmem_destroy(&m);
	munmap(mem, ram);

	/* not RAM */
	gmem_init(&m);
	ck_assert_int_eq(x86_acpi_build(&p, &b), 0);
	ck_assert_int_eq(x86_acpi_install(&m, &b, &rsdp), -EFAULT);
	x86_acpi_blob_free(&b);
}
END_TEST

/* --- AML encoder --- */

START_TEST(test_aml_integers)
{
	static const struct {
		uint64_t v;
		uint8_t enc[9];
		size_t n;
	} t[] = {
		{ 0, { 0x00 }, 1 },
		{ 1, { 0x01 }, 1 },
		{ 2, { 0x0a, 0x02 }, 2 },
		{ 0xff, { 0x0a, 0xff }, 2 },
		{ 0x100, { 0x0b, 0x00, 0x01 }, 3 },
		{ 0x10000, { 0x0c, 0x00, 0x00, 0x01, 0x00 }, 5 },
		{ 0xd0000000, { 0x0c, 0x00, 0x00, 0x00, 0xd0 }, 5 },
		{ 0x100000000ULL, { 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 }, 9 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct aml a;

		aml_init(&a);
		aml_integer(&a, t[i].v);
		ck_assert_int_eq(a.err, 0);
		ck_assert_uint_eq(a.len, t[i].n);
		ck_assert(!memcmp(a.buf, t[i].enc, t[i].n));
		aml_free(&a);
	}
}
END_TEST

/* PkgLength (§20.2.4) around each encoding boundary. */
START_TEST(test_aml_pkglength)
{
	static const size_t body[] = { 0, 62, 63, 64, 4093, 4094, 4095,
				       (1u << 20) - 4, (1u << 20) - 3 };
	static const unsigned nbytes[] = { 1, 1, 2, 2, 2, 3, 3, 3, 4 };
	static uint8_t zero[1u << 20];

	for (size_t i = 0; i < sizeof(body) / sizeof(body[0]); i++) {
		struct aml a;
		size_t total, decoded;
		unsigned nb;

		aml_init(&a);
		aml_byte(&a, 0x12);
		size_t mark = aml_pkg_begin(&a);
		aml_bytes(&a, zero, body[i]);
		aml_pkg_end(&a, mark);
		ck_assert_int_eq(a.err, 0);
		nb = (a.buf[1] >> 6) + 1;
		ck_assert_uint_eq(nb, nbytes[i]);
		total = body[i] + nb;
		if (nb == 1) {
			decoded = a.buf[1] & 0x3f;
		} else {
			ck_assert_uint_eq(a.buf[1] & 0x30, 0);
			decoded = a.buf[1] & 0x0f;
			for (unsigned k = 1; k < nb; k++)
				decoded |= (size_t)a.buf[1 + k] << (4 + 8 * (k - 1));
		}
		ck_assert_uint_eq(decoded, total);
		ck_assert_uint_eq(a.len, 1 + total);
		aml_free(&a);
	}
}
END_TEST

START_TEST(test_aml_names)
{
	struct aml a;

	aml_init(&a);
	aml_namestring(&a, "\\_SB_");
	ck_assert_uint_eq(a.len, 5);
	ck_assert(!memcmp(a.buf, "\\_SB_", 5));
	aml_free(&a);

	aml_init(&a);
	aml_namestring(&a, "_SB.COM1"); /* short segment padded */
	ck_assert_uint_eq(a.len, 9);
	ck_assert(!memcmp(a.buf, "\x2e_SB_COM1", 9));
	aml_free(&a);

	aml_init(&a);
	aml_namestring(&a, "^A.B.C");
	ck_assert(!memcmp(a.buf, "^\x2f\x03" "A___B___C___", 15));
	aml_free(&a);

	aml_init(&a);
	aml_namestring(&a, "1ABC"); /* digit first */
	ck_assert_int_eq(a.err, -EINVAL);
	aml_integer(&a, 5); /* sticky: nothing more happens */
	ck_assert_uint_eq(a.len, 0);
	aml_free(&a);

	aml_init(&a);
	aml_namestring(&a, "ABCDE");
	ck_assert_int_eq(a.err, -EINVAL);
	aml_free(&a);

	aml_init(&a);
	aml_eisaid(&a, "PNP0501");
	ck_assert_uint_eq(a.len, 5);
	ck_assert(!memcmp(a.buf, "\x0c\x41\xd0\x05\x01", 5));
	aml_eisaid(&a, "pnp0501");
	ck_assert_int_eq(a.err, -EINVAL);
	aml_free(&a);
}
END_TEST

/* --- iasl --- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s missing", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, n + 1);
	ck_assert_uint_eq(fread(buf, 1, n, f), (size_t)n);
	fclose(f);
	return buf;
}

static int run_capture(const char *cmd, char **out)
{
	FILE *p = popen(cmd, "r");
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t r;
	int st;

	ck_assert_ptr_nonnull(p);
	while ((r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += r;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	buf[len] = 0;
	st = pclose(p);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_iasl)
{
	static const char *const tables[] = { "XSDT", "FACP", "APIC", "DSDT" };
	struct x86_platform p = { .vcpus = 4, .dev = devs, .ndev = 8 };
	char dir[] = "/tmp/smvmm-acpi-XXXXXX";
	char cmd[512], path[256], err[256], *out, *dsl;

	ck_assert_msg(system("command -v iasl >/dev/null 2>&1") == 0,
		      "iasl not found: install acpica-tools (apt-get install acpica-tools)");
	make_devs(8);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_msg(x86_acpi_dump(&p, dir, err, sizeof(err)) == 0, "%s", err);

	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
		int rc;

		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat 2>&1", dir,
			 tables[i]);
		rc = run_capture(cmd, &out);
		ck_assert_msg(rc == 0, "iasl -d %s.dat exited %d:\n%s", tables[i],
			      rc, out);
		ck_assert_msg(!strstr(out, "Error") && !strstr(out, "Warning"),
			      "iasl -d %s.dat:\n%s", tables[i], out);
		ck_assert_msg(strstr(out, "valid ACPI table, disassembling"),
			      "iasl did not accept %s.dat:\n%s", tables[i], out);
		free(out);
	}

	/*
	 * iasl 20200925 (Debian 12) cannot disassemble a bare RSDP file (its
	 * header check wants an SDT signature): RSDP.dat is checked here.
	 */
	snprintf(path, sizeof(path), "%s/RSDP.dat", dir);
	dsl = slurp(path);
	ck_assert(!memcmp(dsl, "RSD PTR ", 8));
	ck_assert_uint_eq(sum((uint8_t *)dsl, 20), 0);
	ck_assert_uint_eq(sum((uint8_t *)dsl, 36), 0);
	free(dsl);

	snprintf(path, sizeof(path), "%s/DSDT.dsl", dir);
	dsl = slurp(path);
	ck_assert_msg(strstr(dsl, "DefinitionBlock (\"\", \"DSDT\", 2, \"SMVMM \", \"SMVMMVM \""),
		      "%s", dsl);
	ck_assert(strstr(dsl, "Name (\\_S5, Package (0x02)"));
	ck_assert(strstr(dsl, "Scope (\\_SB)"));
	ck_assert(strstr(dsl, "Device (COM1)"));
	ck_assert(strstr(dsl, "EisaId (\"PNP0501\")"));
	ck_assert(strstr(dsl, "IO (Decode16,\n                    0x03F8,"));
	ck_assert(strstr(dsl, "IRQNoFlags ()\n                    {4}"));
	for (unsigned i = 0; i < 8; i++) {
		char want[256];

		snprintf(want, sizeof(want), "Device (VR%02X)", i);
		ck_assert_msg(strstr(dsl, want), "%s missing", want);
		snprintf(want, sizeof(want),
			 "Memory32Fixed (ReadWrite,\n                    0x%08llX,",
			 (unsigned long long)devs[i].base);
		ck_assert_msg(strstr(dsl, want), "%s missing:\n%s", want, dsl);
		snprintf(want, sizeof(want),
			 "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )\n                {\n                    0x%08X,",
			 devs[i].irq);
		ck_assert_msg(strstr(dsl, want), "%s missing", want);
	}
	ck_assert(strstr(dsl, "0xD0000000"));
	ck_assert(strstr(dsl, "0xD0007000"));
	{
		size_t c = 0;

		for (char *s = dsl; (s = strstr(s, "\"LNRO0005\"")); s++)
			c++;
		ck_assert_uint_eq(c, 8);
	}
	free(dsl);

	snprintf(path, sizeof(path), "%s/FACP.dsl", dir);
	dsl = slurp(path);
	ck_assert(strstr(dsl, "Hardware Reduced (V5) : 1"));
	ck_assert(strstr(dsl, "Reset Register Supported (V2) : 1"));
	ck_assert(strstr(dsl, "Address : 0000000000000602"));
	ck_assert(strstr(dsl, "Address : 0000000000000600"));
	ck_assert(strstr(dsl, "Value to cause reset : 01"));
	free(dsl);

	snprintf(path, sizeof(path), "%s/APIC.dsl", dir);
	dsl = slurp(path);
	{
		size_t c = 0;

		for (char *s = dsl; (s = strstr(s, "[Processor Local APIC]")); s++)
			c++;
		ck_assert_uint_eq(c, 4);
	}
	ck_assert(strstr(dsl, "I/O Apic ID : 04"));
	ck_assert(strstr(dsl, "Address : FEC00000"));
	free(dsl);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_dump_errors)
{
	struct x86_platform p = { .vcpus = 1 };
	char err[256] = "";

	ck_assert_int_eq(x86_acpi_dump(&p, "/nonexistent/dir", err, sizeof(err)),
			 -ENOENT);
	ck_assert_msg(strstr(err, "/nonexistent/dir/RSDP.dat"), "%s", err);
	p.vcpus = 0;
	ck_assert_int_eq(x86_acpi_dump(&p, "/tmp", err, sizeof(err)), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("acpi");
	TCase *tc = tcase_create("acpi");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_tables_1cpu);
	tcase_add_test(tc, test_tables_4cpu);
	tcase_add_test(tc, test_tables_max);
	tcase_add_test(tc, test_tables_invalid);
	tcase_add_test(tc, test_install);
	tcase_add_test(tc, test_aml_integers);
	tcase_add_test(tc, test_aml_pkglength);
	tcase_add_test(tc, test_aml_names);
	tcase_add_test(tc, test_iasl);
	tcase_add_test(tc, test_dump_errors);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
