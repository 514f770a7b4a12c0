// SPDX-License-Identifier: MIT
/*
 * x86 kernel loading (core/arch/x86_64/boot.c, layout.c) against the Linux
 * x86 boot protocol (Documentation/arch/x86/boot.rst) and the PVH start_info
 * ABI: synthetic bzImage and ELF files for each check and error, then the
 * real Debian kernel (fetched with scripts/fetch-guest-kernel when missing).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86_64/x86.h"

#define MiB (1ULL << 20)

static char tmpdir[] = "/tmp/smvmm-boot-XXXXXX";

static uint16_t r16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint32_t r32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t r64(const uint8_t *p)
{
	return r32(p) | (uint64_t)r32(p + 4) << 32;
}

static void w16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void w32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static void w64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

static char *tpath(const char *name)
{
	static char buf[8][256];
	static int n;
	char *p = buf[n++ % 8];

	snprintf(p, 256, "%s/%s", tmpdir, name);
	return p;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* A sparse file of `len` bytes (for huge initrds without disk use). */
static void sparse_file(const char *path, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)len), 0);
	if (len)
		ck_assert_int_eq(pwrite(fd, "I", 1, 0), 1);
	close(fd);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/smvmm-boot-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

struct vmem {
	struct gmem m;
	uint64_t size;
};

static void vmem_init(struct vmem *v, uint64_t size)
{
	gmem_init(&v->m);
	v->size = size;
	ck_assert_int_eq(x86_memory_layout(&v->m, size), 0);
}

static uint8_t *gp(struct vmem *v, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gmem_hva(&v->m, gpa, len);

	ck_assert_msg(p != NULL, "gpa 0x%llx+%llu not RAM",
		      (unsigned long long)gpa, (unsigned long long)len);
	return p;
}

/* ---------------- synthetic bzImage ---------------- */

struct bz {
	uint8_t setup_sects;
	uint16_t boot_flag;
	uint32_t magic;
	uint16_t version;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint32_t cmdline_size;
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t initrd_addr_max;
	size_t pm_size;
	uint32_t syssize; /* 0 = pm_size / 16 */
};

static struct bz bz_good(void)
{
	return (struct bz){
		.setup_sects = 4, .boot_flag = 0xaa55, .magic = 0x53726448,
		.version = 0x020f, .loadflags = 0x01, .xloadflags = 0x03,
		.kernel_alignment = 0x200000, .relocatable = 1,
		.cmdline_size = 2047, .pref_address = 0x1000000,
		.init_size = 0x400000, .initrd_addr_max = 0x7fffffff,
		.pm_size = 64 * 1024,
	};
}

static size_t bz_setup_len(const struct bz *b)
{
	return ((size_t)(b->setup_sects ? b->setup_sects : 4) + 1) * 512;
}

static uint8_t pm_byte(size_t i)
{
	return (uint8_t)(i * 7 + (i >> 8));
}

static void make_bz(const char *path, const struct bz *b)
{
	size_t setup = bz_setup_len(b), len = setup + b->pm_size;
	uint8_t *f = calloc(1, len);

	f[0x1f1] = b->setup_sects;
	w32(f + 0x1f4, b->syssize ? b->syssize : (uint32_t)(b->pm_size / 16));
	w16(f + 0x1fe, b->boot_flag);
	f[0x200] = 0xeb;
	f[0x201] = 0x66; /* header ends at 0x268 */
	w32(f + 0x202, b->magic);
	w16(f + 0x206, b->version);
	f[0x211] = b->loadflags;
	w32(f + 0x214, 0x100000);
	w32(f + 0x22c, b->initrd_addr_max);
	w32(f + 0x230, b->kernel_alignment);
	f[0x234] = b->relocatable;
	f[0x235] = 21;
	w16(f + 0x236, b->xloadflags);
	w32(f + 0x238, b->cmdline_size);
	w64(f + 0x258, b->pref_address);
	w32(f + 0x260, b->init_size);
	for (size_t i = 0; i < b->pm_size; i++)
		f[setup + i] = pm_byte(i);
	write_file(path, f, len);
	free(f);
}

/* cfg.ram_zeroed for load(): false but in test_elf_zero_pages */
static bool g_ram_zeroed;

static int load(struct vmem *v, const char *kernel, const char *initrd,
		const char *cmdline, enum boot_protocol proto,
		struct smvmm_x86_regs *r, struct x86_boot_info *info,
		char *err, size_t errlen)
{
	struct x86_boot_cfg cfg = {
		.kernel = kernel, .initrd = initrd, .cmdline = cmdline,
		.protocol = proto, .rsdp_gpa = X86_ACPI_BASE, .vcpus = 1,
		.mem_size = v->size, .ram_zeroed = g_ram_zeroed,
	};

	return x86_boot_load_info(&v->m, &cfg, r, info, err, errlen);
}

/* Expect load failure with `ret` and `needle` in the message. */
static void expect_err(uint64_t mem, const char *kernel, const char *initrd,
		       const char *cmdline, enum boot_protocol proto, int ret,
		       const char *needle)
{
	struct vmem v;
	struct smvmm_x86_regs r;
	char err[512] = "";

	vmem_init(&v, mem);
	ck_assert_int_eq(load(&v, kernel, initrd, cmdline, proto, &r, NULL, err,
			      sizeof(err)), ret);
	ck_assert_msg(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
	gmem_destroy(&v.m);
}

static void check_e820(const uint8_t *bp, uint64_t mem)
{
	const uint8_t *t = bp + 0x2d0;
	unsigned n = bp[0x1e8];
	uint64_t low = mem < 0xc0000000ULL ? mem : 0xc0000000ULL;

	ck_assert_uint_eq(n, mem > low ? 5 : 4);
	ck_assert_uint_eq(r64(t), 0);
	ck_assert_uint_eq(r64(t + 8), 0x9fc00);
	ck_assert_uint_eq(r32(t + 16), 1);
	ck_assert_uint_eq(r64(t + 20), 0x9fc00);
	ck_assert_uint_eq(r64(t + 28), 0x400);
	ck_assert_uint_eq(r32(t + 36), 2);
	ck_assert_uint_eq(r64(t + 40), 0xe0000);
	ck_assert_uint_eq(r64(t + 48), 0x20000);
	ck_assert_uint_eq(r32(t + 56), 2);
	ck_assert_uint_eq(r64(t + 60), 0x100000);
	ck_assert_uint_eq(r64(t + 68), low - 0x100000);
	ck_assert_uint_eq(r32(t + 76), 1);
}

/* boot.rst "64-bit BOOT PROTOCOL" CPU state + our GDT/page tables. */
static void check_long_mode(struct vmem *v, const struct smvmm_x86_regs *r)
{
	const uint8_t *pml4 = gp(v, X86_PML4_ADDR, 4096);
	const uint8_t *pdpt = gp(v, X86_PDPT_ADDR, 4096);
	const uint8_t *gdt = gp(v, X86_GDT_ADDR, 48);

	ck_assert_uint_eq(r->cs.selector, 0x10); /* __BOOT_CS */
	ck_assert_uint_eq(r->cs.l, 1);
	ck_assert_uint_eq(r->cs.db, 0);
	ck_assert_uint_eq(r->cs.present, 1);
	ck_assert_uint_eq(r->cs.type & 0x8, 0x8); /* code */
	ck_assert_uint_eq(r->ds.selector, 0x18);  /* __BOOT_DS */
	ck_assert_uint_eq(r->es.selector, 0x18);
	ck_assert_uint_eq(r->ss.selector, 0x18);
	ck_assert_uint_eq(r->ds.type & 0x8, 0);
	ck_assert_uint_eq(r->ds.type & 0x2, 0x2); /* writable */
	ck_assert_uint_eq(r->rflags, 0x2);          /* interrupts off */
	ck_assert_uint_eq(r->cr0 & 0x80000001ULL, 0x80000001ULL);
	ck_assert_uint_eq(r->cr4 & 0x20, 0x20);
	ck_assert_uint_eq(r->efer & 0x500, 0x500);
	ck_assert_uint_eq(r->cr3, X86_PML4_ADDR);
	ck_assert_uint_eq(r->rsi, X86_ZERO_PAGE_ADDR);
	ck_assert_uint_eq(r->gdt.base, X86_GDT_ADDR);
	ck_assert_uint_ge(r->gdt.limit, 0x1f);
	ck_assert_uint_eq(r->tr.type, 11);
	/* GDT: 64-bit code at 0x10, flat data at 0x18 (SDM Vol. 3 §3.4.5) */
	ck_assert_uint_eq(r64(gdt + 0x10), 0x00af9b000000ffffULL);
	ck_assert_uint_eq(r64(gdt + 0x18), 0x00cf93000000ffffULL);
	ck_assert_uint_eq(r64(gdt + 0x08), 0x00cf9b000000ffffULL);
	/* identity map of 4 GiB with 2 MiB pages */
	ck_assert_uint_eq(r64(pml4), X86_PDPT_ADDR | 3);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t pd = r64(pdpt + 8 * i) & ~0xfffULL;
		const uint8_t *pdp;

		ck_assert_uint_eq(r64(pdpt + 8 * i) & 3, 3);
		pdp = gp(v, pd, 4096);
		for (unsigned j = 0; j < 512; j += 73)
			ck_assert_uint_eq(r64(pdp + 8 * j),
					  (((uint64_t)i * 512 + j) << 21) | 0x83);
		ck_assert_uint_eq(r64(pdp + 8 * 511),
				  (((uint64_t)i * 512 + 511) << 21) | 0x83);
	}
	ck_assert_uint_eq(r64(pdpt + 8 * 4), 0);
}

START_TEST(test_bz_good)
{
	struct bz b = bz_good();
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";
	const char *cmdline = "console=ttyS0 root=/dev/vda";
	uint8_t *initrd = malloc(MiB + 123), *bp;

	for (size_t i = 0; i < MiB + 123; i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	write_file(tpath("initrd"), initrd, MiB + 123);
	make_bz(tpath("bzImage"), &b);
	vmem_init(&v, 64 * MiB);
	ck_assert_msg(load(&v, tpath("bzImage"), tpath("initrd"), cmdline,
			   BOOT_PROTO_AUTO, &r, &info, err, sizeof(err)) == 0,
		      "%s", err);

	ck_assert_int_eq(info.protocol, BOOT_PROTO_LINUX);
	ck_assert_uint_eq(info.kernel_addr, 0x1000000); /* pref_address */
	ck_assert_uint_eq(info.entry, 0x1000200);       /* + 0x200 */
	ck_assert_uint_eq(r.rip, 0x1000200);
	ck_assert_uint_eq(info.boot_version, 0x020f);
	/* initrd: highest page-aligned address that fits below RAM end */
	ck_assert_uint_eq(info.initrd_addr, (64 * MiB - (MiB + 123)) & ~0xfffULL);
	ck_assert(!memcmp(gp(&v, info.initrd_addr, MiB + 123), initrd, MiB + 123));
	for (size_t i = 0; i < b.pm_size; i += 997)
		ck_assert_uint_eq(gp(&v, 0x1000000 + i, 1)[0], pm_byte(i));
	check_long_mode(&v, &r);

	bp = gp(&v, X86_ZERO_PAGE_ADDR, 4096);
	/* the file's setup header was copied ... */
	ck_assert_uint_eq(r16(bp + 0x1fe), 0xaa55);
	ck_assert_uint_eq(r32(bp + 0x202), 0x53726448);
	ck_assert_uint_eq(r16(bp + 0x206), 0x020f);
	ck_assert_uint_eq(r32(bp + 0x260), b.init_size);
	ck_assert_uint_eq(r32(bp + 0x238), 2047);
	ck_assert_uint_eq(r64(bp + 0x258), 0x1000000);
	/* ... and the loader's fields written (boot.rst) */
	ck_assert_uint_eq(bp[0x210], 0xff);              /* type_of_loader */
	ck_assert_uint_eq(bp[0x211] & 0x81, 0x81);       /* LOADED_HIGH|CAN_USE_HEAP */
	ck_assert_uint_eq(r16(bp + 0x224), 0xfe00);      /* heap_end_ptr */
	ck_assert_uint_eq(r32(bp + 0x214), 0x1000000);   /* code32_start */
	ck_assert_uint_eq(r32(bp + 0x228), X86_CMDLINE_ADDR);
	ck_assert_str_eq((char *)gp(&v, r32(bp + 0x228), strlen(cmdline) + 1),
			 cmdline);
	ck_assert_uint_eq(r32(bp + 0x218), info.initrd_addr);
	ck_assert_uint_eq(r32(bp + 0x21c), MiB + 123);
	ck_assert_uint_eq(r32(bp + 0x0c0), 0); /* ext_ramdisk_image */
	ck_assert_uint_eq(r32(bp + 0x0c4), 0);
	ck_assert_uint_eq(r32(bp + 0x0c8), 0); /* ext_cmd_line_ptr */
	ck_assert_uint_eq(r64(bp + 0x070), X86_ACPI_BASE); /* acpi_rsdp_addr */
	ck_assert_uint_eq(bp[0x1ef], 0); /* sentinel */
	check_e820(bp, 64 * MiB);
	/* the kernel's whole init_size lies below the initrd */
	ck_assert_uint_le(info.kernel_end, info.initrd_addr);

	gmem_destroy(&v.m);
	free(initrd);
}
END_TEST

START_TEST(test_bz_relocate_and_limits)
{
	struct bz b = bz_good();
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";

	/* 16 MiB: pref_address 16 MiB does not fit; relocatable -> 2 MiB */
	make_bz(tpath("k"), &b);
	vmem_init(&v, 16 * MiB);
	ck_assert_msg(load(&v, tpath("k"), NULL, "", BOOT_PROTO_LINUX, &r, &info,
			   err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(info.kernel_addr, 0x200000);
	ck_assert_uint_eq(r.rip, 0x200200);
	ck_assert_uint_eq(gp(&v, 0x200000 + 5, 1)[0], pm_byte(5));
	ck_assert_uint_eq(r32(gp(&v, X86_ZERO_PAGE_ADDR, 4096) + 0x218), 0);
	gmem_destroy(&v.m);

	/* not relocatable: the same is an error */
	b.relocatable = 0;
	make_bz(tpath("k"), &b);
	expect_err(16 * MiB, tpath("k"), NULL, "", BOOT_PROTO_AUTO, -ENOSPC,
		   "kernel does not fit: init_size 0x400000 at 0x1000000 beyond RAM");

	/* initrd_addr_max caps the initrd placement */
	b = bz_good();
	b.initrd_addr_max = 0x2ffffff;
	make_bz(tpath("k"), &b);
	sparse_file(tpath("rd"), 3 * MiB);
	vmem_init(&v, 64 * MiB);
	ck_assert_msg(load(&v, tpath("k"), tpath("rd"), "", BOOT_PROTO_AUTO, &r,
			   &info, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(info.initrd_addr, 0x3000000 - 3 * MiB);
	gmem_destroy(&v.m);

	/* setup_sects 0 means 4 */
	b = bz_good();
	b.setup_sects = 0;
	make_bz(tpath("k"), &b);
	vmem_init(&v, 64 * MiB);
	ck_assert_msg(load(&v, tpath("k"), NULL, NULL, BOOT_PROTO_AUTO, &r,
			   &info, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(gp(&v, 0x1000000 + 77, 1)[0], pm_byte(77));
	gmem_destroy(&v.m);
}
END_TEST

START_TEST(test_bz_errors)
{
	struct bz b;
	char *k = tpath("k");
	static char longcmd[4096];

	b = bz_good();
	b.magic = 0x12345678;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "/k: setup header magic 'HdrS' missing");

	b = bz_good();
	b.boot_flag = 0;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "boot_flag 0x0000 at 0x1fe is not 0xAA55");

	b = bz_good();
	b.version = 0x0205;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "boot protocol 2.05 < 2.12 required for 64-bit entry");

	b = bz_good();
	b.xloadflags = 0x02;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "XLF_KERNEL_64 not set");

	b = bz_good();
	b.loadflags = 0;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "LOADED_HIGH not set");

	b = bz_good();
	b.init_size = 0x10000000; /* 256 MiB in 64 MiB of RAM */
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOSPC,
		   "kernel does not fit: init_size 0x10000000 at 0x200000 beyond RAM");

	b = bz_good();
	b.init_size = 0x100; /* smaller than the code itself */
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "init_size 0x100 is smaller than the protected-mode code");

	b = bz_good();
	b.cmdline_size = 16;
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "0123456789abcdefX", BOOT_PROTO_AUTO,
		   -E2BIG, "cmdline longer than cmdline_size 16");
	/* exactly cmdline_size is fine */
	{
		struct vmem v;
		struct smvmm_x86_regs r;
		char err[256];

		vmem_init(&v, 64 * MiB);
		ck_assert_int_eq(load(&v, k, NULL, "0123456789abcdef",
				      BOOT_PROTO_AUTO, &r, NULL, err,
				      sizeof(err)), 0);
		gmem_destroy(&v.m);
	}
	b = bz_good();
	make_bz(k, &b);
	memset(longcmd, 'a', sizeof(longcmd) - 1);
	expect_err(64 * MiB, k, NULL, longcmd, BOOT_PROTO_AUTO, -E2BIG,
		   "cmdline longer than cmdline_size 2047");

	/* initrd too large: 60 MiB above a kernel at 16 MiB in 64 MiB */
	sparse_file(tpath("big"), 60 * MiB);
	expect_err(64 * MiB, k, tpath("big"), "", BOOT_PROTO_AUTO, -ENOSPC,
		   "initrd too large");
	sparse_file(tpath("huge"), 200 * MiB);
	expect_err(64 * MiB, k, tpath("huge"), "", BOOT_PROTO_AUTO, -ENOSPC,
		   "/huge: initrd too large");

	/* truncated: syssize promises more than the file has */
	b = bz_good();
	b.syssize = (uint32_t)(b.pm_size / 16 + 1);
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC, "truncated");

	/* a file that ends inside the setup code */
	b = bz_good();
	b.setup_sects = 200;
	make_bz(k, &b);
	ck_assert_int_eq(truncate(k, 200 * 512), 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "setup_sects 200");

	write_file(k, "tiny", 4);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "too small for a setup header");

	b = bz_good();
	make_bz(k, &b);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_PVH, -ENOEXEC,
		   "protocol pvh needs an ELF kernel");
	expect_err(64 * MiB, tpath("missing"), NULL, "", BOOT_PROTO_AUTO,
		   -ENOENT, "/missing: No such file or directory");
	expect_err(64 * MiB, k, tpath("missing-rd"), "", BOOT_PROTO_AUTO,
		   -ENOENT, "/missing-rd: No such file or directory");
	expect_err(64 * MiB, tmpdir, NULL, "", BOOT_PROTO_AUTO, -EINVAL,
		   "not a regular file");
}
END_TEST

/* ---------------- synthetic ELF ---------------- */

struct seg {
	uint32_t type;
	uint64_t paddr, vaddr, filesz, memsz, off; /* off 0 = auto */
	const uint8_t *data;                       /* NULL = pattern */
};

static uint8_t seg_byte(unsigned s, size_t i)
{
	return (uint8_t)(s * 31 + i * 13);
}

/* Build an ELF64 x86-64 ET_EXEC with the given program headers. */
static void make_elf(const char *path, uint64_t entry, const struct seg *s,
		     unsigned n, uint16_t machine, size_t truncate_to)
{
	size_t off = 64 + 56 * n, len;
	uint8_t *f;
	uint64_t offs[16];

	for (unsigned i = 0; i < n; i++) {
		off = (off + 15) & ~(size_t)15;
		offs[i] = s[i].off ? s[i].off : off;
		if (!s[i].off)
			off += s[i].filesz;
	}
	len = off;
	f = calloc(1, len + 16);
	memcpy(f, "\x7f" "ELF", 4);
	f[4] = 2;
	f[5] = 1;
	f[6] = 1;
	w16(f + 16, 2);
	w16(f + 18, machine);
	w32(f + 20, 1);
	w64(f + 24, entry);
	w64(f + 32, 64);
	w16(f + 52, 64);
	w16(f + 54, 56);
	w16(f + 56, n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *p = f + 64 + 56 * i;

		w32(p, s[i].type);
		w32(p + 4, 7);
		w64(p + 8, offs[i]);
		w64(p + 16, s[i].vaddr);
		w64(p + 24, s[i].paddr);
		w64(p + 32, s[i].filesz);
		w64(p + 40, s[i].memsz);
		w64(p + 48, 0x1000);
		if (!s[i].off) {
			for (size_t j = 0; j < s[i].filesz; j++)
				f[offs[i] + j] = s[i].data ? s[i].data[j]
							   : seg_byte(i, j);
		}
	}
	write_file(path, f, truncate_to ? truncate_to : len);
	free(f);
}

/* A PT_NOTE body: "Xen" note of type 18 with a 4- or 8-byte entry, after an
 * unrelated note. */
static size_t pvh_note(uint8_t *buf, uint32_t entry, unsigned descsz)
{
	size_t n = 0;

	/* unrelated GNU note */
	w32(buf + n, 4);
	w32(buf + n + 4, 4);
	w32(buf + n + 8, 3);
	memcpy(buf + n + 12, "GNU", 4);
	w32(buf + n + 16, 0xdeadbeef);
	n += 20;
	/* Xen PHYS32_ENTRY */
	w32(buf + n, 4);
	w32(buf + n + 4, descsz);
	w32(buf + n + 8, 18);
	memcpy(buf + n + 12, "Xen", 4);
	memset(buf + n + 16, 0, 8);
	w32(buf + n + 16, entry);
	n += 16 + ((descsz + 3) & ~3u);
	return n;
}

START_TEST(test_elf_linux)
{
	struct seg s[2] = {
		{ .type = 1, .paddr = 0x1000000, .vaddr = 0xffffffff81000000ULL,
		  .filesz = 0x2000, .memsz = 0x3000 },
		{ .type = 1, .paddr = 0x1200000, .vaddr = 0xffffffff81200000ULL,
		  .filesz = 0x100, .memsz = 0x100 },
	};
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";
	uint8_t *bp;

	/* virtual e_entry is translated through its segment */
	make_elf(tpath("vmlinux"), 0xffffffff81000100ULL, s, 2, 62, 0);
	vmem_init(&v, 64 * MiB);
	/* stale bytes where the bss goes: the loader must zero them */
	memset(gp(&v, 0x1002000, 0x1000), 0xcc, 0x1000);
	sparse_file(tpath("rd"), 5000);
	ck_assert_msg(load(&v, tpath("vmlinux"), tpath("rd"), "quiet",
			   BOOT_PROTO_AUTO, &r, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_int_eq(info.protocol, BOOT_PROTO_LINUX);
	ck_assert(info.is_elf);
	ck_assert_uint_eq(r.rip, 0x1000100);
	ck_assert_uint_eq(info.kernel_addr, 0x1000000);
	ck_assert_uint_eq(info.kernel_end, 0x1200100);
	for (size_t j = 0; j < 0x2000; j += 111)
		ck_assert_uint_eq(gp(&v, 0x1000000 + j, 1)[0], seg_byte(0, j));
	ck_assert_uint_eq(gp(&v, 0x1200000 + 0xff, 1)[0], seg_byte(1, 0xff));
	for (size_t j = 0; j < 0x1000; j++)
		ck_assert_uint_eq(gp(&v, 0x1002000 + j, 1)[0], 0);
	check_long_mode(&v, &r);

	/* synthesized setup header for the 64-bit protocol */
	bp = gp(&v, X86_ZERO_PAGE_ADDR, 4096);
	ck_assert_uint_eq(r16(bp + 0x1fe), 0xaa55);
	ck_assert_uint_eq(r32(bp + 0x202), 0x53726448);
	ck_assert_uint_ge(r16(bp + 0x206), 0x020c);
	ck_assert_uint_eq(bp[0x210], 0xff);
	ck_assert_uint_eq(r32(bp + 0x228), X86_CMDLINE_ADDR);
	ck_assert_str_eq((char *)gp(&v, X86_CMDLINE_ADDR, 6), "quiet");
	ck_assert_uint_eq(r32(bp + 0x21c), 5000);
	ck_assert_uint_eq(r32(bp + 0x218), (64 * MiB - 5000) & ~0xfffULL);
	ck_assert_uint_eq(r64(bp + 0x070), X86_ACPI_BASE);
	check_e820(bp, 64 * MiB);
	gmem_destroy(&v.m);

	/* physical e_entry is used as is */
	make_elf(tpath("vmlinux"), 0x1000040, s, 2, 62, 0);
	vmem_init(&v, 64 * MiB);
	ck_assert_msg(load(&v, tpath("vmlinux"), NULL, "", BOOT_PROTO_LINUX,
			   &r, &info, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(r.rip, 0x1000040);
	gmem_destroy(&v.m);
}
END_TEST

/* Is the guest page at gpa resident in the host (faulted in)? */
static bool resident(struct vmem *v, uint64_t gpa)
{
	uintptr_t p = (uintptr_t)gp(v, gpa & ~0xfffULL, 4096);
	unsigned char vec = 0;

	ck_assert_int_eq(mincore((void *)p, 4096, &vec), 0);
	return vec & 1;
}

/*
 * With ram_zeroed (fresh guest RAM, as smvmm's vm.c loads into), the loader
 * copies only the guest pages of a segment that hold a non-zero byte and
 * leaves the bss alone: zero pages of the file are never faulted in.  The
 * segment is not page-aligned, so "page" means a guest page.
 */
START_TEST(test_elf_zero_pages)
{
	enum { LEN = 6 * 4096 + 100, BASE = 0x1000800 };
	static uint8_t data[LEN];
	struct seg s[1] = {
		{ .type = 1, .paddr = BASE, .vaddr = BASE, .filesz = LEN,
		  .memsz = LEN + 5 * 4096, .data = data },
	};
	struct vmem v;
	struct smvmm_x86_regs r;
	char err[512] = "";
	uint64_t end = BASE + LEN;

	memset(data, 0, sizeof(data));
	/* guest page 0x1000000 (the segment's first 0x800 bytes): one byte */
	data[0x7ff] = 0x11;
	/* guest pages 0x1001000 and 0x1002000: zero */
	/* guest page 0x1003000: its last byte */
	data[0x1003fff - BASE] = 0x22;
	/* guest pages 0x1004000, 0x1005000: zero; 0x1006000: the entry */
	data[0x1006000 - BASE] = 0x90;
	/* the tail (to end, in guest page 0x1006000 too) */
	data[LEN - 1] = 0x33;
	make_elf(tpath("vmlinux"), 0x1006000, s, 1, 62, 0);

	g_ram_zeroed = true;
	vmem_init(&v, 64 * MiB);
	ck_assert_msg(load(&v, tpath("vmlinux"), NULL, "", BOOT_PROTO_LINUX,
			   &r, NULL, err, sizeof(err)) == 0, "%s", err);
	g_ram_zeroed = false;
	/* only the non-zero pages were touched (checked first: reading a
	 * page of the memfd faults it in) */
	ck_assert(resident(&v, 0x1000000));
	ck_assert(!resident(&v, 0x1001000));
	ck_assert(!resident(&v, 0x1002000));
	ck_assert(resident(&v, 0x1003000));
	ck_assert(!resident(&v, 0x1004000));
	ck_assert(!resident(&v, 0x1005000));
	ck_assert(resident(&v, 0x1006000));
	/* the bss (past the page of the file's tail) was not cleared */
	ck_assert(!resident(&v, 0x1008000));
	ck_assert(!resident(&v, 0x100a000));
	/* every byte as in the file, the bss zero */
	ck_assert_int_eq(memcmp(gp(&v, BASE, LEN), data, LEN), 0);
	for (uint64_t a = end; a < BASE + s[0].memsz; a++)
		ck_assert_uint_eq(gp(&v, a, 1)[0], 0);
	gmem_destroy(&v.m);

	/* Without ram_zeroed every page is written: stale bytes go. */
	vmem_init(&v, 64 * MiB);
	memset(gp(&v, 0x1001000, 0x2000), 0xcc, 0x2000);
	memset(gp(&v, end, 0x2000), 0xcc, 0x2000);
	ck_assert_msg(load(&v, tpath("vmlinux"), NULL, "", BOOT_PROTO_LINUX,
			   &r, NULL, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(memcmp(gp(&v, BASE, LEN), data, LEN), 0);
	for (uint64_t a = end; a < end + 0x2000; a++)
		ck_assert_uint_eq(gp(&v, a, 1)[0], 0);
	gmem_destroy(&v.m);
}
END_TEST

START_TEST(test_elf_pvh)
{
	uint8_t note[64];
	struct seg s[2] = {
		{ .type = 1, .paddr = 0x1000000, .vaddr = 0xffffffff81000000ULL,
		  .filesz = 0x2000, .memsz = 0x2000 },
		{ .type = 4, .data = note },
	};
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";
	const uint8_t *si, *mm, *mod;

	for (unsigned descsz = 4; descsz <= 8; descsz += 4) {
		s[1].filesz = s[1].memsz = pvh_note(note, 0x1000850, descsz);
		make_elf(tpath("pvh"), 0x1000000, s, 2, 62, 0);
		sparse_file(tpath("rd"), 2 * MiB);
		vmem_init(&v, 128 * MiB);
		ck_assert_msg(load(&v, tpath("pvh"), tpath("rd"), "console=hvc0",
				   BOOT_PROTO_AUTO, &r, &info, err,
				   sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(info.protocol, BOOT_PROTO_PVH);
		/* PVH ABI: 32-bit protected mode, paging off, EBX=start_info */
		ck_assert_uint_eq(r.rip, 0x1000850);
		ck_assert_uint_eq(r.rbx, X86_PVH_INFO_ADDR);
		ck_assert_uint_eq(r.cr0 & 0x80000001ULL, 1);
		ck_assert_uint_eq(r.cr4, 0);
		ck_assert_uint_eq(r.efer, 0);
		ck_assert_uint_eq(r.cs.l, 0);
		ck_assert_uint_eq(r.cs.db, 1);
		ck_assert_uint_eq(r.cs.base, 0);
		ck_assert_uint_eq(r.cs.limit, 0xffffffff);
		ck_assert_uint_eq(r.cs.type & 0x8, 0x8);
		ck_assert_uint_eq(r.ds.db, 1);
		ck_assert_uint_eq(r.ds.type & 0xa, 0x2);
		ck_assert_uint_eq(r.ss.selector, r.ds.selector);
		ck_assert_uint_eq(r.es.selector, r.ds.selector);
		ck_assert_uint_eq(r.rflags, 0x2);

		si = gp(&v, X86_PVH_INFO_ADDR, 56);
		ck_assert_uint_eq(r32(si), 0x336ec578);
		ck_assert_uint_eq(r32(si + 4), 1);
		ck_assert_uint_eq(r32(si + 12), 1); /* nr_modules */
		mod = gp(&v, r64(si + 16), 32);
		ck_assert_uint_eq(r64(mod), 126 * MiB);
		ck_assert_uint_eq(r64(mod + 8), 2 * MiB);
		ck_assert_str_eq((char *)gp(&v, r64(si + 24), 13), "console=hvc0");
		ck_assert_uint_eq(r64(si + 32), X86_ACPI_BASE);
		ck_assert_uint_eq(r32(si + 48), 4); /* memmap_entries */
		mm = gp(&v, r64(si + 40), 24 * 4);
		ck_assert_uint_eq(r64(mm + 0), 0);
		ck_assert_uint_eq(r64(mm + 8), 0x9fc00);
		ck_assert_uint_eq(r32(mm + 16), 1);
		ck_assert_uint_eq(r32(mm + 24 + 16), 2);
		ck_assert_uint_eq(r64(mm + 72), 0x100000);
		ck_assert_uint_eq(r64(mm + 80), 127 * MiB);
		ck_assert_uint_eq(r32(mm + 88), 1);
		/* the start_info/memmap area is below 1 MiB, outside the e820
		 * RAM the kernel may hand out before it copies them: in the
		 * first RAM entry, but Linux reserves the first 1 MiB */
		gmem_destroy(&v.m);
	}

	/* protocol linux on the same ELF: 64-bit entry at e_entry */
	vmem_init(&v, 128 * MiB);
	ck_assert_msg(load(&v, tpath("pvh"), NULL, "", BOOT_PROTO_LINUX, &r,
			   &info, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(info.protocol, BOOT_PROTO_LINUX);
	ck_assert_uint_eq(r.rip, 0x1000000);
	check_long_mode(&v, &r);
	gmem_destroy(&v.m);

	/* entry outside the loaded image */
	s[1].filesz = s[1].memsz = pvh_note(note, 0x5000000, 4);
	make_elf(tpath("pvh"), 0x1000000, s, 2, 62, 0);
	expect_err(128 * MiB, tpath("pvh"), NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "XEN_ELFNOTE_PHYS32_ENTRY 0x5000000 is not inside a loaded segment");

	/* 8-byte descriptor with high bits set */
	s[1].filesz = s[1].memsz = pvh_note(note, 0x1000850, 8);
	note[20 + 16 + 4] = 1;
	make_elf(tpath("pvh"), 0x1000000, s, 2, 62, 0);
	expect_err(128 * MiB, tpath("pvh"), NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "XEN_ELFNOTE_PHYS32_ENTRY: bad descriptor");

	/* malformed note: namesz runs past the segment */
	s[1].filesz = s[1].memsz = pvh_note(note, 0x1000850, 4);
	w32(note + 20, 0x7fffffff);
	make_elf(tpath("pvh"), 0x1000000, s, 2, 62, 0);
	expect_err(128 * MiB, tpath("pvh"), NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "malformed ELF note");

	/* pvh requested, no note */
	make_elf(tpath("nonote"), 0x1000000, s, 1, 62, 0);
	expect_err(128 * MiB, tpath("nonote"), NULL, "", BOOT_PROTO_PVH,
		   -ENOEXEC, "no XEN_ELFNOTE_PHYS32_ENTRY note");
}
END_TEST

START_TEST(test_elf_errors)
{
	struct seg s[2] = {
		{ .type = 1, .paddr = 0x1000000, .vaddr = 0x1000000,
		  .filesz = 0x1000, .memsz = 0x1000 },
		{ .type = 1, .paddr = 0x1100000, .vaddr = 0x1100000,
		  .filesz = 0x1000, .memsz = 0x1000 },
	};
	char *k = tpath("elf");

	make_elf(k, 0x1000000, s, 2, 3 /* EM_386 */, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "e_machine 3 is not EM_X86_64");

	/* segment beyond RAM */
	s[1].paddr = 63 * MiB;
	s[1].memsz = 2 * MiB;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOSPC,
		   "kernel does not fit: segment 1");

	/* huge p_memsz must not wrap */
	s[1].paddr = 0x1100000;
	s[1].memsz = UINT64_MAX - 0x1000;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOSPC,
		   "segment 1");

	/* overlapping our low structures */
	s[1].paddr = 0x8000;
	s[1].memsz = 0x1000;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "overlaps the boot structures below 1 MiB");

	/* two PT_LOADs on top of each other */
	s[1].paddr = 0x1000800;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "overlaps another PT_LOAD");

	/* truncated file */
	s[1].paddr = 0x1100000;
	make_elf(k, 0x1000000, s, 2, 62, 0x1000);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "beyond the end of the file");

	/* p_offset far beyond the file */
	s[1].off = 1ULL << 40;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "segment 1: file range");
	s[1].off = 0;

	/* filesz > memsz */
	s[1].filesz = 0x2000;
	make_elf(k, 0x1000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "p_filesz 0x2000 > p_memsz 0x1000");
	s[1].filesz = 0x1000;

	/* entry outside every segment */
	make_elf(k, 0x3000000, s, 2, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "e_entry 0x3000000 is not inside a loaded segment");

	/* truncated program header table */
	make_elf(k, 0x1000000, s, 2, 62, 100);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "program headers");

	/* no loadable segments */
	s[0].type = 6;
	make_elf(k, 0x1000000, s, 1, 62, 0);
	expect_err(64 * MiB, k, NULL, "", BOOT_PROTO_AUTO, -ENOEXEC,
		   "no PT_LOAD segments");
	s[0].type = 1;

	/* initrd must fit above the kernel */
	make_elf(k, 0x1000000, s, 2, 62, 0);
	sparse_file(tpath("rd"), 48 * MiB);
	expect_err(64 * MiB, k, tpath("rd"), "", BOOT_PROTO_AUTO, -ENOSPC,
		   "initrd too large");
}
END_TEST

START_TEST(test_layout)
{
	struct x86_e820_entry e[8];
	struct gmem m;
	int n;

	n = x86_e820_build(5ULL << 30, e, 8);
	ck_assert_int_eq(n, 5);
	ck_assert_uint_eq(e[3].addr, 0x100000);
	ck_assert_uint_eq(e[3].addr + e[3].size, 3ULL << 30);
	ck_assert_uint_eq(e[4].addr, 4ULL << 30);
	ck_assert_uint_eq(e[4].size, 2ULL << 30);
	ck_assert_int_eq(x86_e820_build(5ULL << 30, e, 4), -ENOSPC);

	gmem_init(&m);
	ck_assert_int_eq(x86_memory_layout(&m, 5ULL << 30), 0);
	ck_assert_uint_eq(m.nr, 2);
	ck_assert_uint_eq(gmem_total(&m), 5ULL << 30);
	ck_assert(gmem_is_ram(&m, 0, 3ULL << 30));
	ck_assert(!gmem_is_ram(&m, X86_VIRTIO_MMIO_BASE, 1));
	ck_assert(gmem_is_ram(&m, 4ULL << 30, 2ULL << 30));
	gmem_destroy(&m);

	gmem_init(&m);
	ck_assert_int_eq(x86_memory_layout(&m, 1 << 20), -EINVAL);
	ck_assert_int_eq(x86_memory_layout(&m, (16 << 20) + 1), -EINVAL);
	ck_assert_int_eq(x86_memory_layout(&m, 16 << 20), 0);
	ck_assert_uint_eq(m.nr, 1);
	gmem_destroy(&m);
}
END_TEST

/* ---------------- the real Debian kernel ---------------- */

static const char *kernel_dir(void)
{
	static char dir[1024];
	const char *e = getenv("SMVMM_GUEST_KERNEL_DIR");

	if (e && *e)
		return e;
	e = getenv("XDG_CACHE_HOME");
	if (e && *e)
		snprintf(dir, sizeof(dir), "%s/smvmm/kernel", e);
	else
		snprintf(dir, sizeof(dir), "%s/.cache/smvmm/kernel",
			 getenv("HOME") ? getenv("HOME") : "/root");
	return dir;
}

static void need_kernel(const char *dir)
{
	char path[1100], cmd[2300];
	struct stat st;

	snprintf(path, sizeof(path), "%s/vmlinux", dir);
	if (stat(path, &st) == 0) {
		snprintf(path, sizeof(path), "%s/vmlinuz", dir);
		if (stat(path, &st) == 0)
			return;
	}
	snprintf(cmd, sizeof(cmd),
		 "SMVMM_GUEST_KERNEL_DIR='%s' '%s/scripts/fetch-guest-kernel' >&2",
		 dir, SMVMM_SOURCE_DIR);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
	ck_assert_msg(stat(path, &st) == 0, "%s missing after fetch", path);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	ck_assert_msg(f != NULL, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n);
	ck_assert_uint_eq(fread(buf, 1, n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

START_TEST(test_debian_bzimage)
{
	const char *dir = kernel_dir();
	char path[1100];
	uint8_t *f, *bp;
	size_t flen, setup;
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";
	uint16_t version;
	uint64_t pref;
	uint32_t init_size;

	need_kernel(dir);
	snprintf(path, sizeof(path), "%s/vmlinuz", dir);
	f = slurp(path, &flen);
	/* what boot.rst says a 64-bit capable modern kernel carries */
	ck_assert_uint_eq(r16(f + 0x1fe), 0xaa55);
	ck_assert(!memcmp(f + 0x202, "HdrS", 4));
	version = r16(f + 0x206);
	ck_assert_uint_ge(version, 0x020c);
	ck_assert_uint_eq(r16(f + 0x236) & 1, 1); /* XLF_KERNEL_64 */
	ck_assert_uint_eq(f[0x234], 1);           /* relocatable */
	pref = r64(f + 0x258);
	init_size = r32(f + 0x260);
	setup = ((size_t)(f[0x1f1] ? f[0x1f1] : 4) + 1) * 512;

	sparse_file(tpath("rd"), 8 * MiB);
	vmem_init(&v, 256 * MiB);
	ck_assert_msg(load(&v, path, tpath("rd"), "console=ttyS0 panic=-1",
			   BOOT_PROTO_AUTO, &r, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_int_eq(info.protocol, BOOT_PROTO_LINUX);
	ck_assert_uint_eq(info.boot_version, version);
	ck_assert_uint_eq(info.kernel_addr, pref);
	ck_assert_uint_eq(info.kernel_end, pref + init_size);
	ck_assert_uint_eq(r.rip, pref + 0x200);
	ck_assert_uint_le(info.kernel_end, info.initrd_addr);
	ck_assert_uint_eq(info.initrd_addr, 248 * MiB);
	ck_assert(!memcmp(gp(&v, pref, flen - setup), f + setup, flen - setup));
	check_long_mode(&v, &r);

	bp = gp(&v, X86_ZERO_PAGE_ADDR, 4096);
	/* header copied from 0x1f1 to the end given by the jump at 0x200 */
	ck_assert(!memcmp(bp + 0x1f1, f + 0x1f1, 0x210 - 0x1f1 - 0x17)); /* up to vid_mode */
	ck_assert(!memcmp(bp + 0x202, f + 0x202, 0x0e));
	ck_assert(!memcmp(bp + 0x22c, f + 0x22c, 0x202 + f[0x201] - 0x22c));
	ck_assert_uint_eq(bp[0x210], 0xff);
	ck_assert_uint_eq(bp[0x211], f[0x211] | 0x81);
	ck_assert_str_eq((char *)gp(&v, r32(bp + 0x228), 23),
			 "console=ttyS0 panic=-1");
	ck_assert_uint_eq(r32(bp + 0x218), 248 * MiB);
	ck_assert_uint_eq(r32(bp + 0x21c), 8 * MiB);
	if (version >= 0x020e)
		ck_assert_uint_eq(r64(bp + 0x070), X86_ACPI_BASE);
	check_e820(bp, 256 * MiB);
	gmem_destroy(&v.m);

	/* too little RAM for init_size: a clear error, no crash */
	snprintf(err, sizeof(err), "kernel does not fit: init_size 0x%x", init_size);
	expect_err(32 * MiB, path, NULL, "", BOOT_PROTO_AUTO, -ENOSPC, err);
	free(f);
}
END_TEST

/* Run `readelf` on the real vmlinux for independent facts. */
static uint64_t readelf_value(const char *args, const char *path,
			      const char *after, int hexbytes_le)
{
	char cmd[1200], line[1024];
	FILE *p;
	uint64_t v = UINT64_MAX;
	int armed = 0;

	snprintf(cmd, sizeof(cmd), "readelf %s '%s' 2>/dev/null", args, path);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p)) {
		char *s = strstr(line, after);

		if (!hexbytes_le && s) {
			v = strtoull(s + strlen(after), NULL, 0);
			break;
		}
		if (hexbytes_le && s) {
			armed = 1;
			continue;
		}
		if (armed && (s = strstr(line, "description data:"))) {
			unsigned b[8] = { 0 };
			int n = sscanf(s + 17, "%x %x %x %x %x %x %x %x", &b[0],
				       &b[1], &b[2], &b[3], &b[4], &b[5], &b[6],
				       &b[7]);

			v = 0;
			for (int i = n - 1; i >= 0; i--)
				v = (v << 8) | b[i];
			break;
		}
	}
	pclose(p);
	return v;
}

START_TEST(test_debian_vmlinux)
{
	const char *dir = kernel_dir();
	char path[1100];
	struct vmem v;
	struct smvmm_x86_regs r;
	struct x86_boot_info info;
	char err[512] = "";
	uint64_t e_entry, pvh_entry;
	const uint8_t *si;

	need_kernel(dir);
	snprintf(path, sizeof(path), "%s/vmlinux", dir);
	ck_assert_msg(system("command -v readelf >/dev/null") == 0,
		      "readelf (binutils) not found");
	e_entry = readelf_value("-h", path, "Entry point address:", 0);
	pvh_entry = readelf_value("-n", path, "(0x00000012)", 1);
	ck_assert_uint_ne(e_entry, UINT64_MAX);

	vmem_init(&v, 256 * MiB);
	ck_assert_msg(load(&v, path, NULL, "console=ttyS0", BOOT_PROTO_LINUX, &r,
			   &info, err, sizeof(err)) == 0, "%s", err);
	ck_assert(info.is_elf);
	ck_assert_uint_eq(r.rip, e_entry); /* Linux's e_entry is physical */
	ck_assert_uint_ge(info.kernel_addr, 0x100000);
	check_long_mode(&v, &r);
	gmem_destroy(&v.m);

	if (pvh_entry == UINT64_MAX) {
		/* kernel without CONFIG_PVH: auto falls back to Linux */
		vmem_init(&v, 256 * MiB);
		ck_assert_int_eq(load(&v, path, NULL, "", BOOT_PROTO_AUTO, &r,
				      &info, err, sizeof(err)), 0);
		ck_assert_int_eq(info.protocol, BOOT_PROTO_LINUX);
		gmem_destroy(&v.m);
		return;
	}
	vmem_init(&v, 256 * MiB);
	sparse_file(tpath("rd"), MiB);
	ck_assert_msg(load(&v, path, tpath("rd"), "console=ttyS0",
			   BOOT_PROTO_AUTO, &r, &info, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_int_eq(info.protocol, BOOT_PROTO_PVH);
	ck_assert_uint_eq(r.rip, pvh_entry);
	ck_assert_uint_eq(r.rbx, X86_PVH_INFO_ADDR);
	si = gp(&v, X86_PVH_INFO_ADDR, 56);
	ck_assert_uint_eq(r32(si), 0x336ec578);
	ck_assert_uint_eq(r32(si + 12), 1);
	ck_assert_uint_ge(info.initrd_addr, info.kernel_end);
	gmem_destroy(&v.m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("x86_boot");
	TCase *tc = tcase_create("synthetic");
	TCase *tk = tcase_create("debian");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_bz_good);
	tcase_add_test(tc, test_elf_zero_pages);
	tcase_add_test(tc, test_bz_relocate_and_limits);
	tcase_add_test(tc, test_bz_errors);
	tcase_add_test(tc, test_elf_linux);
	tcase_add_test(tc, test_elf_pvh);
	tcase_add_test(tc, test_elf_errors);
	tcase_add_test(tc, test_layout);
	suite_add_tcase(s, tc);

	/* may download the kernel package first */
	tcase_add_checked_fixture(tk, setup, teardown);
	tcase_set_timeout(tk, 600);
	tcase_add_test(tk, test_debian_bzimage);
	tcase_add_test(tk, test_debian_vmlinux);
	suite_add_tcase(s, tk);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
