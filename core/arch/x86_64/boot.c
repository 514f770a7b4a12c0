// SPDX-License-Identifier: MIT
/*
 * Kernel loading for x86_64 guests.
 *
 *  - bzImage: Linux boot protocol (Documentation/arch/x86/boot.rst), entered
 *    through the 64-bit entry point ("64-bit BOOT PROTOCOL"): the setup code
 *    is not run; we fill boot_params ourselves.
 *  - ELF64 vmlinux: PT_LOAD segments at their physical addresses; entered
 *    either with the same 64-bit protocol (synthesized setup header) or, if
 *    it carries XEN_ELFNOTE_PHYS32_ENTRY, through PVH
 *    (xen/include/public/arch-x86/hvm/start_info.h).
 *
 * Kernel and initrd files are untrusted: every header field is range-checked
 * before it is used as an offset, size or address, and every error names the
 * file and the field.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "le.h"
#include "x86.h"

/* --- boot.rst: setup header offsets (in the file and in boot_params) --- */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_VID_MODE 0x1fa
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_HEADER 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_CODE32_START 0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_SYSSIZE 0x1f4
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_END_MAX 0x290 /* end of struct setup_header in boot_params */

#define BOOT_FLAG_MAGIC 0xaa55
#define HDRS_MAGIC 0x53726448 /* "HdrS" */

#define LOADED_HIGH 0x01
#define CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x01

/* boot_params ("zero page") fields outside the setup header */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_SIZE 0x1000

/* --- ELF (System V gABI, x86-64 psABI) --- */
#define EI_NIDENT 16
#define ELFCLASS64 2
#define ELFDATA2LSB 1
#define ET_EXEC 2
#define EM_X86_64 62
#define PT_LOAD 1
#define PT_NOTE 4
#define EHDR_SIZE 64
#define PHDR_SIZE 56
#define ELF_MAX_PHDRS 64
#define ELF_MAX_NOTE_SIZE (1u << 20)
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* --- PVH: hvm_start_info (start_info.h), version 1 --- */
#define HVM_START_MAGIC 0x336ec578
#define HVM_START_INFO_SIZE 56
#define PVH_MODLIST_ADDR (X86_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ADDR (X86_PVH_INFO_ADDR + 0x80)

/* --- CPU state bits (SDM Vol. 3 §2.5, §2.2.1) --- */
#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL
#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_PS 0x80ULL

/* Default for a synthesized header (what modern kernels advertise). */
#define ELF_INITRD_ADDR_MAX 0x7fffffffULL

#define PAGE_SIZE 0x1000ULL

struct kctx {
	struct gmem *m;
	const struct x86_boot_cfg *cfg;
	const char *path;     /* kernel path for messages */
	int fd;
	uint64_t fsize;
	uint64_t low_end;
	size_t cmdlen;
	char *err;
	size_t errlen;
	/* initrd */
	int ifd;
	uint64_t isize;
};

static int fail(struct kctx *k, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct kctx *k, int ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!k->err || !k->errlen)
		return ret;
	n = snprintf(k->err, k->errlen, "%s: ", k->path);
	if (n < 0 || (size_t)n >= k->errlen)
		return ret;
	va_start(ap, fmt);
	vsnprintf(k->err + n, k->errlen - n, fmt, ap);
	va_end(ap);
	return ret;
}

/* pread exactly len bytes; -EIO on a short file. */
static int read_at(int fd, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/* Read `len` bytes of the kernel file at `off` into guest memory at `gpa`. */
static int load_to_guest(struct kctx *k, int fd, const char *what,
			 uint64_t off, uint64_t gpa, uint64_t len)
{
	void *dst;
	int ret;

	if (!len)
		return 0;
	dst = gmem_hva(k->m, gpa, len);
	if (!dst)
		return fail(k, -EFAULT, "%s [0x%llx, 0x%llx) is not guest RAM",
			    what, (unsigned long long)gpa,
			    (unsigned long long)(gpa + len));
	ret = read_at(fd, off, dst, len);
	if (ret)
		return fail(k, ret, "reading %s (%llu bytes at offset %llu): %s",
			    what, (unsigned long long)len,
			    (unsigned long long)off,
			    ret == -EIO ? "file truncated" : strerror(-ret));
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return !n || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

/*
 * load_to_guest for RAM known to be zero: read through a bounce buffer and
 * copy only the guest pages (4 KiB, by guest address) holding a non-zero
 * byte, so that zero pages of the file are never touched in guest RAM.
 */
static int load_to_zeroed_guest(struct kctx *k, int fd, const char *what,
				uint64_t off, uint64_t gpa, uint64_t len)
{
	enum { BOUNCE = 1 << 20 };
	uint8_t *dst, *buf;
	uint64_t done = 0;
	int ret = 0;

	if (!len)
		return 0;
	dst = gmem_hva(k->m, gpa, len);
	if (!dst)
		return fail(k, -EFAULT, "%s [0x%llx, 0x%llx) is not guest RAM",
			    what, (unsigned long long)gpa,
			    (unsigned long long)(gpa + len));
	buf = malloc(BOUNCE);
	if (!buf)
		return fail(k, -ENOMEM, "reading %s: out of memory", what);
	while (done < len) {
		size_t n = len - done > BOUNCE ? BOUNCE : (size_t)(len - done);

		ret = read_at(fd, off + done, buf, n);
		if (ret)
			break;
		for (size_t i = 0; i < n;) {
			/* up to the next guest page boundary */
			size_t piece = PAGE_SIZE - ((gpa + done + i) & (PAGE_SIZE - 1));

			if (piece > n - i)
				piece = n - i;
			if (!all_zero(buf + i, piece))
				memcpy(dst + done + i, buf + i, piece);
			i += piece;
		}
		done += n;
	}
	free(buf);
	if (ret)
		return fail(k, ret, "reading %s (%llu bytes at offset %llu): %s",
			    what, (unsigned long long)len,
			    (unsigned long long)off,
			    ret == -EIO ? "file truncated" : strerror(-ret));
	return 0;
}

static uint64_t gdt_entry(uint64_t flags, uint64_t base, uint64_t limit)
{
	/* SDM Vol. 3 §3.4.5 segment descriptor layout */
	return ((base & 0xff000000ULL) << 32) | ((flags & 0xf0ffULL) << 40) |
	       ((limit & 0xf0000ULL) << 32) | ((base & 0x00ffffffULL) << 16) |
	       (limit & 0xffffULL);
}

static void seg_from(struct smvmm_x86_segment *s, uint16_t sel, uint8_t type,
		     bool code64, bool db)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff; /* 4 GiB, byte granular as KVM wants it */
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = db;
	s->s = 1;
	s->l = code64;
	s->g = 1;
}

/*
 * Low structures shared by both protocols: zero [0, end of the command line
 * area), GDT, TSS, identity page tables, command line.
 */
static int write_low(struct kctx *k)
{
	uint64_t low_len = X86_CMDLINE_ADDR + X86_CMDLINE_MAX;
	uint8_t *low = gmem_hva(k->m, 0, low_len);
	uint8_t *p;

	if (!low)
		return fail(k, -EFAULT,
			    "guest RAM must cover [0, 0x%llx) for the boot structures",
			    (unsigned long long)low_len);
	memset(low, 0, low_len);

	/* GDT: null, code32, code64 (__BOOT_CS), data (__BOOT_DS), TSS */
	p = low + X86_GDT_ADDR;
	le_put64(p + 0x00, 0);
	le_put64(p + X86_SEL_CODE32, gdt_entry(0xc09b, 0, 0xfffff));
	le_put64(p + X86_SEL_CODE64, gdt_entry(0xa09b, 0, 0xfffff));
	le_put64(p + X86_SEL_DATA, gdt_entry(0xc093, 0, 0xfffff));
	/* 64-bit TSS descriptor (16 bytes, SDM Vol. 3 §7.2.3), available */
	le_put64(p + X86_SEL_TSS, gdt_entry(0x0089, X86_TSS_ADDR, 0x67));
	le_put64(p + X86_SEL_TSS + 8, X86_TSS_ADDR >> 32);

	/*
	 * Page tables: identity map [0, 4 GiB) with 2 MiB pages.  boot.rst
	 * requires the kernel, boot_params and the command line to be
	 * identity mapped; all of them live below 3 GiB.
	 */
	le_put64(low + X86_PML4_ADDR, X86_PDPT_ADDR | PTE_P | PTE_RW);
	for (uint64_t i = 0; i < 4; i++) {
		le_put64(low + X86_PDPT_ADDR + 8 * i,
		      (X86_PD_ADDR + i * PAGE_SIZE) | PTE_P | PTE_RW);
		for (uint64_t j = 0; j < 512; j++)
			le_put64(low + X86_PD_ADDR + i * PAGE_SIZE + 8 * j,
			      ((i * 512 + j) << 21) | PTE_P | PTE_RW | PTE_PS);
	}

	memcpy(low + X86_CMDLINE_ADDR, k->cfg->cmdline ? k->cfg->cmdline : "",
	       k->cmdlen + 1);
	return 0;
}

static void regs_common(struct smvmm_x86_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->rflags = 0x2; /* reserved bit 1; IF clear: interrupts off */
	r->rsp = X86_BOOT_STACK_TOP;
	r->gdt.base = X86_GDT_ADDR;
	r->gdt.limit = X86_SEL_TSS + 16 - 1;
	r->idt.base = 0;
	r->idt.limit = 0;
	/* TR: busy TSS (type 11), as VM entry requires (SDM Vol. 3 §26.3.1.2) */
	r->tr.base = X86_TSS_ADDR;
	r->tr.limit = 0x67;
	r->tr.selector = X86_SEL_TSS;
	r->tr.type = 11;
	r->tr.present = 1;
	/* LDTR unusable */
	r->ldt.type = 2;
	r->ldt.present = 0;
}

/* Linux 64-bit boot protocol register state (boot.rst "64-bit BOOT PROTOCOL"). */
static void regs_linux64(struct smvmm_x86_regs *r, uint64_t entry)
{
	regs_common(r);
	seg_from(&r->cs, X86_SEL_CODE64, 0xb, true, false);
	seg_from(&r->ds, X86_SEL_DATA, 0x3, false, true);
	r->es = r->fs = r->gs = r->ss = r->ds;
	r->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
	r->cr3 = X86_PML4_ADDR;
	r->cr4 = CR4_PAE;
	r->efer = EFER_LME | EFER_LMA;
	r->rip = entry;
	r->rsi = X86_ZERO_PAGE_ADDR;
}

/* PVH entry state (docs/misc/pvh.pandoc in Xen). */
static void regs_pvh(struct smvmm_x86_regs *r, uint64_t entry)
{
	regs_common(r);
	seg_from(&r->cs, X86_SEL_CODE32, 0xb, false, true);
	seg_from(&r->ds, X86_SEL_DATA, 0x3, false, true);
	r->es = r->fs = r->gs = r->ss = r->ds;
	r->cr0 = CR0_PE | CR0_ET;
	r->cr3 = 0;
	r->cr4 = 0;
	r->efer = 0;
	r->rip = entry;
	r->rbx = X86_PVH_INFO_ADDR;
}

static int open_initrd(struct kctx *k)
{
	struct stat st;
	const char *path = k->cfg->initrd;

	k->ifd = -1;
	k->isize = 0;
	if (!path)
		return 0;
	/* O_NONBLOCK: a FIFO must not block the open (refused below). */
	k->ifd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (k->ifd < 0) {
		int ret = -errno;

		snprintf(k->err, k->errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(k->ifd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(k->err, k->errlen, "%s: not a regular file", path);
		return -EINVAL;
	}
	k->isize = (uint64_t)st.st_size;
	return 0;
}

/*
 * Place the initrd at the highest page-aligned address below `limit` (boot.rst:
 * below initrd_addr_max and the end of low RAM) and not below `floor`.
 */
static int place_initrd(struct kctx *k, uint64_t limit, uint64_t floor,
			uint64_t *addr)
{
	uint64_t a;

	*addr = 0;
	if (k->ifd < 0 || !k->isize)
		return 0;
	if (k->isize > limit || ((limit - k->isize) & ~(PAGE_SIZE - 1)) < floor) {
		snprintf(k->err, k->errlen,
			 "%s: initrd too large: %llu bytes, %llu free between 0x%llx and 0x%llx (initrd_addr_max/end of low RAM)",
			 k->cfg->initrd, (unsigned long long)k->isize,
			 (unsigned long long)(limit > floor ? limit - floor : 0),
			 (unsigned long long)floor, (unsigned long long)limit);
		return -ENOSPC;
	}
	a = (limit - k->isize) & ~(PAGE_SIZE - 1);
	*addr = a;
	return 0;
}

static int load_initrd(struct kctx *k, uint64_t addr)
{
	void *dst;
	int ret;

	if (k->ifd < 0 || !k->isize)
		return 0;
	dst = gmem_hva(k->m, addr, k->isize);
	if (!dst) {
		snprintf(k->err, k->errlen, "%s: initrd at 0x%llx is not guest RAM",
			 k->cfg->initrd, (unsigned long long)addr);
		return -EFAULT;
	}
	ret = read_at(k->ifd, 0, dst, k->isize);
	if (ret) {
		snprintf(k->err, k->errlen, "%s: reading initrd: %s",
			 k->cfg->initrd,
			 ret == -EIO ? "file shrank while reading" : strerror(-ret));
		return ret;
	}
	return 0;
}

/* Fill e820 + the fields common to both setup-header sources. */
static int fill_boot_params(struct kctx *k, uint8_t *bp, uint64_t kaddr,
			    uint64_t initrd_addr)
{
	struct x86_e820_entry e[X86_E820_MAX];
	int n = x86_e820_build(k->cfg->mem_size, e, X86_E820_MAX);

	if (n < 0)
		return fail(k, n, "e820 table overflow");
	/* boot.rst "Details of header fields": what the loader must write */
	le_put16(bp + HDR_VID_MODE, 0xffff); /* "normal" */
	bp[HDR_TYPE_OF_LOADER] = 0xff;    /* undefined loader */
	bp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	/* heap end, relative to the (not run) real-mode code, minus 0x200 */
	le_put16(bp + HDR_HEAP_END_PTR, 0xfe00);
	le_put32(bp + HDR_CODE32_START, (uint32_t)kaddr);
	le_put32(bp + HDR_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
	le_put32(bp + BP_EXT_CMD_LINE_PTR, (uint32_t)(X86_CMDLINE_ADDR >> 32));
	le_put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	le_put32(bp + HDR_RAMDISK_SIZE, (uint32_t)k->isize);
	le_put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
	le_put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(k->isize >> 32));
	/*
	 * acpi_rsdp_addr (protocol 2.14+): older kernels ignore it and find
	 * the RSDP by scanning 0xe0000-0xfffff, where it also is.
	 */
	le_put64(bp + BP_ACPI_RSDP_ADDR, k->cfg->rsdp_gpa);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *t = bp + BP_E820_TABLE + 20 * i;

		le_put64(t, e[i].addr);
		le_put64(t + 8, e[i].size);
		le_put32(t + 16, e[i].type);
	}
	if (gmem_write(k->m, X86_ZERO_PAGE_ADDR, bp, BP_SIZE))
		return fail(k, -EFAULT, "boot_params at 0x%llx not in RAM",
			    (unsigned long long)X86_ZERO_PAGE_ADDR);
	return 0;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int load_bzimage(struct kctx *k, const uint8_t *hdr, size_t hlen,
			struct smvmm_x86_regs *bsp, struct x86_boot_info *info)
{
	uint8_t bp[BP_SIZE];
	uint16_t version;
	uint32_t setup_sects, init_size, align, cmdline_size, initrd_max;
	uint64_t pm_off, pm_size, pref, kaddr, limit, initrd_addr, hdr_end;
	bool relocatable;
	int ret;

	if (hlen < HDR_END_MAX)
		return fail(k, -ENOEXEC,
			    "file too small for a setup header (%zu bytes)", hlen);
	if (le_get16(hdr + HDR_BOOT_FLAG) != BOOT_FLAG_MAGIC)
		return fail(k, -ENOEXEC,
			    "boot_flag 0x%04x at 0x1fe is not 0xAA55 (not a kernel image?)",
			    le_get16(hdr + HDR_BOOT_FLAG));
	if (le_get32(hdr + HDR_HEADER) != HDRS_MAGIC)
		return fail(k, -ENOEXEC,
			    "setup header magic 'HdrS' missing (boot protocol < 2.00 or not a bzImage)");
	version = le_get16(hdr + HDR_VERSION);
	if (version < 0x020c)
		return fail(k, -ENOEXEC,
			    "boot protocol %u.%02u < 2.12 required for 64-bit entry",
			    version >> 8, version & 0xff);
	if (!(le_get16(hdr + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return fail(k, -ENOEXEC,
			    "xloadflags 0x%x: XLF_KERNEL_64 not set (no 64-bit entry point)",
			    le_get16(hdr + HDR_XLOADFLAGS));
	if (!(hdr[HDR_LOADFLAGS] & LOADED_HIGH))
		return fail(k, -ENOEXEC,
			    "loadflags 0x%x: LOADED_HIGH not set (zImage not supported)",
			    hdr[HDR_LOADFLAGS]);

	/* setup_sects == 0 means 4 (boot.rst, "setup_sects") */
	setup_sects = hdr[HDR_SETUP_SECTS] ? hdr[HDR_SETUP_SECTS] : 4;
	pm_off = ((uint64_t)setup_sects + 1) * 512;
	if (pm_off >= k->fsize)
		return fail(k, -ENOEXEC,
			    "setup_sects %u: protected-mode code at offset 0x%llx is beyond the end of the file (%llu bytes)",
			    setup_sects, (unsigned long long)pm_off,
			    (unsigned long long)k->fsize);
	pm_size = k->fsize - pm_off;
	if ((uint64_t)le_get32(hdr + HDR_SYSSIZE) * 16 > pm_size)
		return fail(k, -ENOEXEC,
			    "truncated: syssize says %llu bytes of protected-mode code, the file has %llu",
			    (unsigned long long)le_get32(hdr + HDR_SYSSIZE) * 16,
			    (unsigned long long)pm_size);

	init_size = le_get32(hdr + HDR_INIT_SIZE);
	if (init_size < pm_size)
		return fail(k, -ENOEXEC,
			    "init_size 0x%x is smaller than the protected-mode code (0x%llx bytes)",
			    init_size, (unsigned long long)pm_size);
	cmdline_size = le_get32(hdr + HDR_CMDLINE_SIZE);
	if (k->cmdlen > cmdline_size)
		return fail(k, -E2BIG, "cmdline longer than cmdline_size %u (%zu bytes)",
			    cmdline_size, k->cmdlen);
	align = le_get32(hdr + HDR_KERNEL_ALIGNMENT);
	relocatable = hdr[HDR_RELOCATABLE] != 0;
	pref = le_get64(hdr + HDR_PREF_ADDRESS);
	initrd_max = le_get32(hdr + HDR_INITRD_ADDR_MAX);

	/* initrd: highest page below min(initrd_addr_max + 1, low RAM end) */
	limit = (uint64_t)initrd_max + 1;
	if (limit > k->low_end)
		limit = k->low_end;
	ret = place_initrd(k, limit, X86_KERNEL_MIN_ADDR, &initrd_addr);
	if (ret)
		return ret;
	limit = initrd_addr ? initrd_addr : k->low_end;

	/* kernel: pref_address if it fits, else the lowest aligned address */
	if (pref < X86_KERNEL_MIN_ADDR && !relocatable)
		return fail(k, -ENOEXEC,
			    "pref_address 0x%llx below 1 MiB and the kernel is not relocatable",
			    (unsigned long long)pref);
	kaddr = pref;
	if (pref < X86_KERNEL_MIN_ADDR || pref > limit || init_size > limit - pref) {
		if (!relocatable)
			goto no_fit;
		if (!is_pow2(align) || align > (1u << 30))
			return fail(k, -ENOEXEC,
				    "kernel_alignment 0x%x is not a power of two <= 1 GiB",
				    align);
		kaddr = (X86_KERNEL_MIN_ADDR + align - 1) & ~((uint64_t)align - 1);
		if (kaddr > limit || init_size > limit - kaddr)
			goto no_fit;
	}

	ret = load_to_guest(k, k->fd, "protected-mode kernel", pm_off, kaddr,
			    pm_size);
	if (ret)
		return ret;
	ret = load_initrd(k, initrd_addr);
	if (ret)
		return ret;

	/*
	 * boot_params: zero page with the file's setup header copied in
	 * (boot.rst: from 0x1f1 to 0x202 + the byte at 0x201), then the
	 * fields a boot loader writes.
	 */
	memset(bp, 0, sizeof(bp));
	hdr_end = 0x202 + hdr[HDR_JUMP + 1];
	if (hdr_end > HDR_END_MAX)
		hdr_end = HDR_END_MAX;
	memcpy(bp + HDR_SETUP_SECTS, hdr + HDR_SETUP_SECTS,
	       hdr_end - HDR_SETUP_SECTS);
	ret = fill_boot_params(k, bp, kaddr, initrd_addr);
	if (ret)
		return ret;

	/* boot.rst: the 64-bit entry is at the load address + 0x200 */
	regs_linux64(bsp, kaddr + 0x200);
	if (info) {
		info->protocol = BOOT_PROTO_LINUX;
		info->is_elf = false;
		info->kernel_addr = kaddr;
		info->kernel_end = kaddr + init_size;
		info->entry = kaddr + 0x200;
		info->initrd_addr = initrd_addr;
		info->initrd_size = initrd_addr ? k->isize : 0;
		info->boot_version = version;
	}
	return 0;

no_fit:
	/* Report the initrd when the kernel would fit without it. */
	if (initrd_addr && pref >= X86_KERNEL_MIN_ADDR && pref <= k->low_end &&
	    init_size <= k->low_end - pref) {
		snprintf(k->err, k->errlen,
			 "%s: initrd too large: %llu bytes at 0x%llx leave no room for the kernel (init_size 0x%x at 0x%llx)",
			 k->cfg->initrd, (unsigned long long)k->isize,
			 (unsigned long long)initrd_addr, init_size,
			 (unsigned long long)pref);
		return -ENOSPC;
	}
	return fail(k, -ENOSPC,
		    "kernel does not fit: init_size 0x%x at 0x%llx beyond RAM (usable low RAM ends at 0x%llx)",
		    init_size, (unsigned long long)kaddr, (unsigned long long)limit);
}

struct elf_seg {
	uint64_t off, filesz, paddr, vaddr, memsz;
};

/*
 * Look for XEN_ELFNOTE_PHYS32_ENTRY (name "Xen") in one PT_NOTE segment.
 * Returns 1 with *entry set, 0 if absent, or -errno on a malformed note.
 */
static int elf_find_pvh(struct kctx *k, uint64_t off, uint64_t size,
			uint64_t *entry)
{
	uint8_t *buf;
	uint64_t pos = 0;
	int ret;

	if (size > ELF_MAX_NOTE_SIZE)
		return fail(k, -ENOEXEC, "PT_NOTE of %llu bytes is too large",
			    (unsigned long long)size);
	buf = malloc(size ? size : 1);
	if (!buf)
		return fail(k, -ENOMEM, "out of memory");
	ret = read_at(k->fd, off, buf, size);
	if (ret) {
		free(buf);
		return fail(k, -ENOEXEC, "PT_NOTE at offset %llu: %s",
			    (unsigned long long)off,
			    ret == -EIO ? "beyond the end of the file" : strerror(-ret));
	}
	ret = 0;
	/* gABI note entries: namesz, descsz, type, name, desc (4-aligned) */
	while (size - pos >= 12) {
		uint32_t namesz = le_get32(buf + pos), descsz = le_get32(buf + pos + 4);
		uint32_t type = le_get32(buf + pos + 8);
		uint64_t name_al = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_al = ((uint64_t)descsz + 3) & ~3ULL;
		const uint8_t *name = buf + pos + 12;

		if (name_al > size - pos - 12 || desc_al > size - pos - 12 - name_al) {
			ret = fail(k, -ENOEXEC, "malformed ELF note at offset %llu",
				   (unsigned long long)(off + pos));
			break;
		}
		if (namesz == 4 && !memcmp(name, "Xen", 4) &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			const uint8_t *d = name + name_al;

			/* Linux emits it as a pointer-sized value; only the
			 * low 32 bits may be set. */
			if (descsz == 4) {
				*entry = le_get32(d);
			} else if (descsz == 8 && !(le_get64(d) >> 32)) {
				*entry = le_get64(d);
			} else {
				ret = fail(k, -ENOEXEC,
					   "XEN_ELFNOTE_PHYS32_ENTRY: bad descriptor (%u bytes)",
					   descsz);
				break;
			}
			ret = 1;
			break;
		}
		pos += 12 + name_al + desc_al;
	}
	free(buf);
	return ret;
}

static int load_elf(struct kctx *k, const uint8_t *eh, size_t hlen,
		    struct smvmm_x86_regs *bsp, struct x86_boot_info *info)
{
	struct elf_seg seg[ELF_MAX_PHDRS];
	unsigned nseg = 0;
	uint8_t ph[ELF_MAX_PHDRS * PHDR_SIZE];
	uint64_t phoff, entry, e_entry, kstart = UINT64_MAX, kend = 0;
	uint64_t pvh_entry = 0, initrd_addr, limit;
	uint16_t phnum, phentsize;
	bool has_pvh = false, pvh;
	int ret;

	if (hlen < EHDR_SIZE)
		return fail(k, -ENOEXEC, "ELF header truncated");
	if (eh[4] != ELFCLASS64 || eh[5] != ELFDATA2LSB)
		return fail(k, -ENOEXEC, "not a little-endian ELF64 file (EI_CLASS %u, EI_DATA %u)",
			    eh[4], eh[5]);
	if (le_get16(eh + 16) != ET_EXEC)
		return fail(k, -ENOEXEC, "e_type %u is not ET_EXEC", le_get16(eh + 16));
	if (le_get16(eh + 18) != EM_X86_64)
		return fail(k, -ENOEXEC, "e_machine %u is not EM_X86_64",
			    le_get16(eh + 18));
	e_entry = le_get64(eh + 24);
	phoff = le_get64(eh + 32);
	phentsize = le_get16(eh + 54);
	phnum = le_get16(eh + 56);
	if (phentsize != PHDR_SIZE)
		return fail(k, -ENOEXEC, "e_phentsize %u is not %u", phentsize,
			    PHDR_SIZE);
	if (phnum == 0 || phnum > ELF_MAX_PHDRS)
		return fail(k, -ENOEXEC, "e_phnum %u not in 1..%u", phnum,
			    ELF_MAX_PHDRS);
	if (phoff > k->fsize || (uint64_t)phnum * PHDR_SIZE > k->fsize - phoff)
		return fail(k, -ENOEXEC,
			    "program headers (e_phoff %llu, %u entries) beyond the end of the file",
			    (unsigned long long)phoff, phnum);
	ret = read_at(k->fd, phoff, ph, (size_t)phnum * PHDR_SIZE);
	if (ret)
		return fail(k, ret, "reading program headers: %s", strerror(-ret));

	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *p = ph + i * PHDR_SIZE;
		uint32_t type = le_get32(p);
		struct elf_seg s = {
			.off = le_get64(p + 8), .vaddr = le_get64(p + 16),
			.paddr = le_get64(p + 24), .filesz = le_get64(p + 32),
			.memsz = le_get64(p + 40),
		};

		if (type == PT_NOTE) {
			if (s.off > k->fsize || s.filesz > k->fsize - s.off)
				return fail(k, -ENOEXEC,
					    "PT_NOTE %u beyond the end of the file", i);
			ret = elf_find_pvh(k, s.off, s.filesz, &pvh_entry);
			if (ret < 0)
				return ret;
			if (ret > 0)
				has_pvh = true;
			continue;
		}
		if (type != PT_LOAD || !s.memsz)
			continue;
		if (s.filesz > s.memsz)
			return fail(k, -ENOEXEC,
				    "segment %u: p_filesz 0x%llx > p_memsz 0x%llx", i,
				    (unsigned long long)s.filesz,
				    (unsigned long long)s.memsz);
		if (s.off > k->fsize || s.filesz > k->fsize - s.off)
			return fail(k, -ENOEXEC,
				    "segment %u: file range [%llu, +%llu) beyond the end of the file (%llu bytes)",
				    i, (unsigned long long)s.off,
				    (unsigned long long)s.filesz,
				    (unsigned long long)k->fsize);
		if (s.paddr < X86_KERNEL_MIN_ADDR)
			return fail(k, -ENOEXEC,
				    "segment %u at p_paddr 0x%llx overlaps the boot structures below 1 MiB",
				    i, (unsigned long long)s.paddr);
		if (s.memsz > k->low_end || s.paddr > k->low_end - s.memsz)
			return fail(k, -ENOSPC,
				    "kernel does not fit: segment %u [0x%llx, +0x%llx) beyond RAM (low RAM ends at 0x%llx)",
				    i, (unsigned long long)s.paddr,
				    (unsigned long long)s.memsz,
				    (unsigned long long)k->low_end);
		for (unsigned j = 0; j < nseg; j++) {
			if (s.paddr < seg[j].paddr + seg[j].memsz &&
			    seg[j].paddr < s.paddr + s.memsz)
				return fail(k, -ENOEXEC,
					    "segment %u [0x%llx, +0x%llx) overlaps another PT_LOAD",
					    i, (unsigned long long)s.paddr,
					    (unsigned long long)s.memsz);
		}
		seg[nseg++] = s;
		if (s.paddr < kstart)
			kstart = s.paddr;
		if (s.paddr + s.memsz > kend)
			kend = s.paddr + s.memsz;
	}
	if (!nseg)
		return fail(k, -ENOEXEC, "no PT_LOAD segments");

	switch (k->cfg->protocol) {
	case BOOT_PROTO_PVH:
		if (!has_pvh)
			return fail(k, -ENOEXEC,
				    "protocol pvh: no XEN_ELFNOTE_PHYS32_ENTRY note (kernel built without CONFIG_PVH?)");
		pvh = true;
		break;
	case BOOT_PROTO_LINUX:
		pvh = false;
		break;
	default:
		pvh = has_pvh; /* auto: PVH when the kernel offers it */
		break;
	}

	/*
	 * Entry point.  PVH: the note's 32-bit physical address.  Linux: e_entry
	 * is the physical startup_64 in Linux's vmlinux; a virtual e_entry is
	 * translated through the segment that contains it.
	 */
	entry = UINT64_MAX;
	if (pvh) {
		entry = pvh_entry;
	} else {
		for (unsigned i = 0; i < nseg && entry == UINT64_MAX; i++)
			if (e_entry >= seg[i].paddr &&
			    e_entry - seg[i].paddr < seg[i].memsz)
				entry = e_entry;
		for (unsigned i = 0; i < nseg && entry == UINT64_MAX; i++)
			if (e_entry >= seg[i].vaddr &&
			    e_entry - seg[i].vaddr < seg[i].memsz)
				entry = seg[i].paddr + (e_entry - seg[i].vaddr);
	}
	{
		bool inside = false;

		for (unsigned i = 0; i < nseg; i++)
			if (entry >= seg[i].paddr &&
			    entry - seg[i].paddr < seg[i].filesz)
				inside = true;
		if (!inside)
			return fail(k, -ENOEXEC,
				    pvh ? "XEN_ELFNOTE_PHYS32_ENTRY 0x%llx is not inside a loaded segment"
					: "e_entry 0x%llx is not inside a loaded segment",
				    (unsigned long long)(pvh ? pvh_entry : e_entry));
	}

	if (!pvh && k->cmdlen > X86_CMDLINE_MAX - 1)
		return fail(k, -E2BIG, "cmdline longer than cmdline_size %llu (%zu bytes)",
			    (unsigned long long)(X86_CMDLINE_MAX - 1), k->cmdlen);

	limit = ELF_INITRD_ADDR_MAX + 1;
	if (limit > k->low_end)
		limit = k->low_end;
	ret = place_initrd(k, limit, (kend + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1),
			   &initrd_addr);
	if (ret)
		return ret;

	for (unsigned i = 0; i < nseg; i++) {
		char what[48];
		uint8_t *bss;

		snprintf(what, sizeof(what), "segment %u", i);
		ret = (k->cfg->ram_zeroed ? load_to_zeroed_guest : load_to_guest)(
			k, k->fd, what, seg[i].off, seg[i].paddr, seg[i].filesz);
		if (ret)
			return ret;
		bss = gmem_hva(k->m, seg[i].paddr + seg[i].filesz,
			       seg[i].memsz - seg[i].filesz);
		if (seg[i].memsz > seg[i].filesz) {
			if (!bss)
				return fail(k, -EFAULT, "segment %u bss not in RAM", i);
			if (!k->cfg->ram_zeroed)
				memset(bss, 0, seg[i].memsz - seg[i].filesz);
		}
	}
	ret = load_initrd(k, initrd_addr);
	if (ret)
		return ret;

	if (pvh) {
		struct x86_e820_entry e[X86_E820_MAX];
		uint8_t si[HVM_START_INFO_SIZE] = { 0 };
		uint8_t mod[32] = { 0 };
		uint8_t mm[24];
		int n = x86_e820_build(k->cfg->mem_size, e, 16);

		if (n < 0)
			return fail(k, n, "memory map overflow");
		le_put32(si + 0, HVM_START_MAGIC);
		le_put32(si + 4, 1); /* version 1: memmap fields present */
		le_put32(si + 8, 0); /* flags */
		if (initrd_addr) {
			le_put32(si + 12, 1);
			le_put64(si + 16, PVH_MODLIST_ADDR);
			le_put64(mod + 0, initrd_addr);
			le_put64(mod + 8, k->isize);
			if (gmem_write(k->m, PVH_MODLIST_ADDR, mod, sizeof(mod)))
				return fail(k, -EFAULT, "modlist not in RAM");
		}
		le_put64(si + 24, X86_CMDLINE_ADDR);
		le_put64(si + 32, k->cfg->rsdp_gpa);
		le_put64(si + 40, PVH_MEMMAP_ADDR);
		le_put32(si + 48, (uint32_t)n);
		for (int i = 0; i < n; i++) {
			le_put64(mm, e[i].addr);
			le_put64(mm + 8, e[i].size);
			le_put32(mm + 16, e[i].type); /* same values as e820 */
			le_put32(mm + 20, 0);
			if (gmem_write(k->m, PVH_MEMMAP_ADDR + 24 * i, mm, 24))
				return fail(k, -EFAULT, "memmap not in RAM");
		}
		if (gmem_write(k->m, X86_PVH_INFO_ADDR, si, sizeof(si)))
			return fail(k, -EFAULT, "hvm_start_info not in RAM");
		regs_pvh(bsp, entry);
	} else {
		uint8_t bp[BP_SIZE];

		/*
		 * A vmlinux has no setup header: synthesize the fields the
		 * kernel reads with the 64-bit protocol (boot.rst).
		 */
		memset(bp, 0, sizeof(bp));
		le_put16(bp + HDR_BOOT_FLAG, BOOT_FLAG_MAGIC);
		le_put32(bp + HDR_HEADER, HDRS_MAGIC);
		le_put16(bp + HDR_VERSION, 0x020f);
		bp[HDR_JUMP + 1] = HDR_END_MAX - 0x202;
		le_put32(bp + HDR_INITRD_ADDR_MAX, (uint32_t)ELF_INITRD_ADDR_MAX);
		le_put32(bp + HDR_KERNEL_ALIGNMENT, 0x200000);
		le_put16(bp + HDR_XLOADFLAGS, XLF_KERNEL_64);
		le_put32(bp + HDR_CMDLINE_SIZE, (uint32_t)(X86_CMDLINE_MAX - 1));
		le_put64(bp + HDR_PREF_ADDRESS, kstart);
		le_put32(bp + HDR_INIT_SIZE, (uint32_t)(kend - kstart));
		ret = fill_boot_params(k, bp, kstart, initrd_addr);
		if (ret)
			return ret;
		regs_linux64(bsp, entry);
	}
	if (info) {
		info->protocol = pvh ? BOOT_PROTO_PVH : BOOT_PROTO_LINUX;
		info->is_elf = true;
		info->kernel_addr = kstart;
		info->kernel_end = kend;
		info->entry = entry;
		info->initrd_addr = initrd_addr;
		info->initrd_size = initrd_addr ? k->isize : 0;
		info->boot_version = 0;
	}
	return 0;
}

int x86_boot_load_info(struct gmem *m, const struct x86_boot_cfg *cfg,
		       struct smvmm_x86_regs *bsp, struct x86_boot_info *info,
		       char *err, size_t errlen)
{
	struct kctx k = {
		.m = m, .cfg = cfg, .path = cfg->kernel ? cfg->kernel : "(null)",
		.fd = -1, .ifd = -1, .err = err, .errlen = errlen,
	};
	uint8_t hdr[0x400];
	size_t hlen;
	struct stat st;
	int ret;

	if (err && errlen)
		err[0] = 0;
	if (info)
		memset(info, 0, sizeof(*info));
	if (!cfg->kernel)
		return fail(&k, -EINVAL, "no kernel given");
	if (cfg->mem_size < X86_MEM_MIN)
		return fail(&k, -EINVAL, "memory size %llu below %llu bytes",
			    (unsigned long long)cfg->mem_size,
			    (unsigned long long)X86_MEM_MIN);
	k.low_end = x86_ram_low_end(cfg->mem_size);
	k.cmdlen = cfg->cmdline ? strlen(cfg->cmdline) : 0;
	if (k.cmdlen > X86_CMDLINE_MAX - 1)
		return fail(&k, -E2BIG, "cmdline longer than %llu bytes",
			    (unsigned long long)(X86_CMDLINE_MAX - 1));

	/* O_NONBLOCK: a FIFO must not block the open (refused below). */
	k.fd = open(cfg->kernel, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (k.fd < 0)
		return fail(&k, -errno, "%s", strerror(errno));
	if (fstat(k.fd, &st)) {
		ret = fail(&k, -errno, "%s", strerror(errno));
		goto err_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = fail(&k, -EINVAL, "not a regular file");
		goto err_fd;
	}
	k.fsize = (uint64_t)st.st_size;
	hlen = k.fsize < sizeof(hdr) ? (size_t)k.fsize : sizeof(hdr);
	ret = read_at(k.fd, 0, hdr, hlen);
	if (ret) {
		ret = fail(&k, ret, "reading header: %s", strerror(-ret));
		goto err_fd;
	}
	ret = open_initrd(&k);
	if (ret)
		goto err_ifd;
	ret = write_low(&k);
	if (ret)
		goto err_ifd;

	if (hlen >= 4 && !memcmp(hdr, "\x7f" "ELF", 4)) {
		ret = load_elf(&k, hdr, hlen, bsp, info);
	} else if (cfg->protocol == BOOT_PROTO_PVH) {
		ret = fail(&k, -ENOEXEC,
			   "protocol pvh needs an ELF kernel with a XEN_ELFNOTE_PHYS32_ENTRY note (this is not ELF; use protocol linux for a bzImage)");
	} else {
		ret = load_bzimage(&k, hdr, hlen, bsp, info);
	}
err_ifd:
	if (k.ifd >= 0)
		close(k.ifd);
err_fd:
	close(k.fd);
	return ret;
}

int x86_boot_load(struct gmem *m, const struct x86_boot_cfg *cfg,
		  struct smvmm_x86_regs *bsp, char *err, size_t errlen)
{
	return x86_boot_load_info(m, cfg, bsp, NULL, err, errlen);
}
