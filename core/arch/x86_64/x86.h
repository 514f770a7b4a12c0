/* SPDX-License-Identifier: MIT */
/*
 * x86_64 architecture code of the core: guest physical memory map, kernel
 * loading (Linux x86 boot protocol for bzImage and ELF vmlinux, PVH), ACPI
 * tables, the COM1 8250 UART and the power-management I/O ports.
 *
 * Guest physical memory map (all fixed; see x86_memory_layout):
 *
 *   0x00000000 - 0x000004ff  real-mode IVT + BIOS data area (zero)
 *   0x00000500 - 0x0000052f  GDT: 0x08 code32, 0x10 code64 (__BOOT_CS),
 *                            0x18 data (__BOOT_DS), 0x20 TSS (16 bytes)
 *   0x00000580 - 0x000005e7  TSS (zero; only so TR is valid at entry)
 *   0x00001000               PML4
 *   0x00002000               PDPT
 *   0x00003000 - 0x00006fff  4 page directories: identity map of the first
 *                            4 GiB with 2 MiB pages
 *   0x00007000 - 0x00007fff  boot_params ("zero page"), Linux protocol
 *   0x00008000 - 0x00008fff  hvm_start_info + modlist + memmap, PVH
 *   0x00009000 - 0x0000efff  boot stack (RSP = 0xf000 at entry)
 *   0x00020000 - 0x0002ffff  kernel command line (NUL-terminated)
 *   0x0009fc00 - 0x0009ffff  e820 reserved (EBDA)
 *   0x000e0000 - 0x000fffff  e820 reserved: ACPI tables, RSDP at 0xe0000
 *   0x00100000 -             kernel (bzImage: pref_address, usually 16 MiB),
 *                            initrd at the top of low RAM
 *   low RAM ends at min(mem, 3 GiB)
 *   0xd0000000 -             virtio-mmio windows, stride 0x1000, size 0x200
 *   0xfec00000               IOAPIC
 *   0xfee00000               LAPIC
 *   0x100000000 -            the rest of RAM, if mem > 3 GiB
 *
 * Port I/O (see x86_pio_dispatch): COM1 0x3f8-0x3ff (IRQ 4); ACPI
 * HW-reduced sleep control 0x600, sleep status 0x601, reset register 0x602
 * (reset value 0x01); i8042 command port 0x64 (0xfe = reset); 0x60, 0x61 and
 * 0x80 read 0 and ignore writes.  Everything else reads 0xff (no device).
 */
#ifndef SMVMM_ARCH_X86_H
#define SMVMM_ARCH_X86_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <smvmm/backend.h>

#include "gmem.h"
#include "machine.h" /* enum boot_protocol */

/* ---- memory map ---- */

#define X86_RAM_LOW_MAX UINT64_C(0xc0000000)    /* low RAM ends at most at 3 GiB */
#define X86_RAM_HIGH_BASE UINT64_C(0x100000000) /* the rest of RAM starts at 4 GiB */
#define X86_MEM_MIN (UINT64_C(2) << 20)         /* x86_memory_layout minimum */

#define X86_VIRTIO_MMIO_BASE UINT64_C(0xd0000000)
#define X86_VIRTIO_MMIO_STRIDE UINT64_C(0x1000)
#define X86_VIRTIO_MMIO_SIZE UINT64_C(0x200)
#define X86_VIRTIO_MMIO_MAX 1024 /* windows up to 0xd0400000 */
#define X86_VIRTIO_MMIO_END \
	(X86_VIRTIO_MMIO_BASE + X86_VIRTIO_MMIO_MAX * X86_VIRTIO_MMIO_STRIDE)

#define X86_IOAPIC_ADDR UINT64_C(0xfec00000)
#define X86_LAPIC_ADDR UINT64_C(0xfee00000)
#define X86_IOAPIC_BASE X86_IOAPIC_ADDR
#define X86_LAPIC_BASE X86_LAPIC_ADDR

#define X86_GDT_ADDR UINT64_C(0x500)
#define X86_TSS_ADDR UINT64_C(0x580)
#define X86_PML4_ADDR UINT64_C(0x1000)
#define X86_PDPT_ADDR UINT64_C(0x2000)
#define X86_PD_ADDR UINT64_C(0x3000) /* 4 pages */
#define X86_ZERO_PAGE_ADDR UINT64_C(0x7000)
#define X86_PVH_INFO_ADDR UINT64_C(0x8000)
#define X86_BOOT_STACK_TOP UINT64_C(0xf000)
#define X86_CMDLINE_ADDR UINT64_C(0x20000)
#define X86_CMDLINE_MAX UINT64_C(0x10000) /* bytes including the NUL */
#define X86_EBDA_ADDR UINT64_C(0x9fc00)
#define X86_ACPI_BASE UINT64_C(0xe0000)   /* RSDP at the start */
#define X86_ACPI_SIZE UINT64_C(0x1ff00)   /* tables end below the reset vector */
/*
 * The x86 reset vector, F000:FFF0 (physical 0xffff0), where firmware would
 * be.  There is no firmware: smvmm puts a 16-byte real-mode stub there that
 * writes X86_PM_RESET_VALUE to the ACPI reset register.  Linux reaches it
 * through machine_real_restart() (reboot_type BOOT_BIOS), which its default
 * reboot order tries on a HW-reduced ACPI machine without EFI (BOOT_EFI
 * first, then BOOT_BIOS), so a plain `reboot` resets the VM instead of
 * spinning in real mode.
 */
#define X86_RESET_VECTOR UINT64_C(0xffff0)
#define X86_RESET_STUB_LEN 16
#define X86_BIOS_END UINT64_C(0x100000)   /* e820 reserved up to here */
#define X86_KERNEL_MIN_ADDR UINT64_C(0x100000) /* nothing of the kernel below 1 MiB */

/* GDT selectors (Linux boot.rst "64-bit BOOT PROTOCOL": __BOOT_CS/__BOOT_DS) */
#define X86_SEL_CODE32 0x08
#define X86_SEL_CODE64 0x10
#define X86_SEL_DATA 0x18
#define X86_SEL_TSS 0x20

/* COM1 and the PM block (ports the FADT points at). */
#define X86_COM1_PORT 0x3f8
#define X86_COM1_IRQ 4
#define X86_PM_SLEEP_CTL_PORT 0x600
#define X86_PM_SLEEP_STS_PORT 0x601
#define X86_PM_RESET_PORT 0x602
#define X86_PM_RESET_VALUE 0x01
#define X86_PM_S5_SLP_TYP 5 /* \_S5 package's first element */
/*
 * pvpanic (QEMU's docs/specs/pvpanic.rst; Linux drivers/misc/pvpanic): one
 * byte at port 0x505, described in the DSDT as _HID "QEMU0001".  Reads give
 * the events the device supports, the guest writes the event at a panic.
 */
#define X86_PVPANIC_PORT 0x505
#define X86_PVPANIC_PANICKED 0x01
#define X86_I8042_CMD_PORT 0x64

/*
 * x86_ram_low_end: end of the RAM region at 0, min(mem_size, 3 GiB).
 * x86_ram_high_size: bytes of RAM at 4 GiB (0 when mem_size <= 3 GiB).
 */
uint64_t x86_ram_low_end(uint64_t mem_size);
uint64_t x86_ram_high_size(uint64_t mem_size);

/*
 * x86_memory_layout: add the RAM regions to `m` with gmem_add_ram: "ram-low"
 * [0, min(mem, 3 GiB)) and, for the rest, "ram-high" at 4 GiB.  mem_size must
 * be a multiple of 4 KiB and at least X86_MEM_MIN (-EINVAL).  Other errors
 * from gmem_add_ram.  Main thread.
 */
int x86_memory_layout(struct gmem *m, uint64_t mem_size);

/* ---- e820 ---- */

#define X86_E820_RAM 1
#define X86_E820_RESERVED 2
#define X86_E820_MAX 128 /* boot_params e820_table[] */

struct x86_e820_entry {
	uint64_t addr, size;
	uint32_t type;
};

/*
 * x86_e820_build: the guest memory map for mem_size bytes of RAM:
 * [0, 0x9fc00) RAM, [0x9fc00, 0xa0000) reserved, [0xe0000, 0x100000)
 * reserved (ACPI), [1 MiB, low end) RAM, [4 GiB, ...) RAM.  Returns the number
 * of entries written (at most `max`), or -ENOSPC when `max` is too small.
 */
int x86_e820_build(uint64_t mem_size, struct x86_e820_entry *e, unsigned max);

/* ---- ACPI ---- */

struct x86_virtio_dev {
	const char *id;    /* for messages only */
	uint64_t base;     /* MMIO window, below 4 GiB (Memory32Fixed) */
	uint32_t size;     /* window size, usually X86_VIRTIO_MMIO_SIZE */
	uint32_t irq;      /* GSI (IOAPIC pin) */
};

struct x86_platform {
	uint32_t vcpus;                    /* 1..255 */
	const struct x86_virtio_dev *dev;
	unsigned ndev;
	const char *oem_id;       /* up to 6 chars, NULL = "SMVMM" */
	const char *oem_table_id; /* up to 8 chars, NULL = "SMVMMVM" */
	bool no_com1;             /* leave COM1 out of the DSDT */
	uint64_t mem_size;        /* informational (not used by the tables) */
};

#define X86_ACPI_MAX_TABLES 8
#define X86_ACPI_MAX_VIRTIO 256 /* DSDT device names VR00..VRFF */

struct x86_acpi_table {
	char sig[5];      /* "RSDP" for the RSDP, else the SDT signature */
	size_t off, len;  /* within blob.data */
};

/* All tables in one host buffer laid out for guest address `gpa`. */
struct x86_acpi_blob {
	uint8_t *data;
	size_t size;
	uint64_t gpa;       /* X86_ACPI_BASE */
	uint64_t rsdp_gpa;  /* == gpa: the RSDP comes first */
	struct x86_acpi_table t[X86_ACPI_MAX_TABLES];
	unsigned nt;
};

/*
 * x86_acpi_build: RSDP (rev 2), XSDT, FADT (rev 6, HW-reduced, sleep control/
 * status and reset registers in port I/O), MADT (one enabled local APIC per
 * vCPU, APIC id = index; one IOAPIC, id = vcpus, GSI base 0) and a DSDT with
 * \_S5 and, under \_SB, COM1 (PNP0501) and one LNRO0005 device per virtio-mmio
 * window.  Checksums and pointers are final for X86_ACPI_BASE.  Errors:
 * -EINVAL (vcpus 0 or > 255, more than X86_ACPI_MAX_VIRTIO devices, a device window above 4 GiB or size 0, irq >= 24),
 * -E2BIG (does not fit in X86_ACPI_SIZE), -ENOMEM.  `out` is zeroed on error.
 * Any thread.
 */
int x86_acpi_build(const struct x86_platform *p, struct x86_acpi_blob *out);

/* x86_acpi_free: free the buffer; the blob is zeroed.  (x86_acpi_blob_free is
 * the same function.) */
void x86_acpi_free(struct x86_acpi_blob *b);
void x86_acpi_blob_free(struct x86_acpi_blob *b);

/*
 * x86_acpi_find: the table with signature `sig` ("RSDP", "XSDT", "FACP",
 * "APIC", "DSDT") or NULL; *len set to its length.
 */
const uint8_t *x86_acpi_find(const struct x86_acpi_blob *b, const char *sig,
			     size_t *len);

/*
 * x86_acpi_install: copy the blob to guest memory at b->gpa.  -EFAULT if that
 * is not RAM.  *rsdp_gpa (optional) receives the RSDP address.  Main thread.
 */
int x86_acpi_install(struct gmem *m, const struct x86_acpi_blob *b,
		     uint64_t *rsdp_gpa);

/*
 * x86_acpi_dump: build the tables for `p` and write each to `dir` under the
 * names acpixtract produces and `iasl -d` reads: RSDP.dat, XSDT.dat,
 * FACP.dat, APIC.dat, DSDT.dat.  0 or -errno with a message in err.
 */
int x86_acpi_dump(const struct x86_platform *p, const char *dir, char *err,
		  size_t errlen);

/* ---- kernel loading ---- */

struct x86_boot_cfg {
	const char *kernel;       /* path: bzImage or ELF64 vmlinux */
	const char *initrd;       /* path or NULL */
	const char *cmdline;      /* NULL = "" */
	enum boot_protocol protocol;
	uint64_t rsdp_gpa;        /* 0 = none (kernel scans 0xe0000) */
	uint32_t vcpus;
	uint64_t mem_size;        /* bytes, as given to x86_memory_layout */
	/* Guest RAM above 1 MiB reads as zero on entry (fresh memory, as
	 * gmem_add_ram gives it): the ELF loader then writes only the pages
	 * of a PT_LOAD segment that hold a non-zero byte and leaves the bss
	 * alone, so zero pages of the file are never touched (no page fault,
	 * no RSS; Debian's vmlinux has ~25 MiB of them).  false: every byte
	 * is written (RAM of unknown content). */
	bool ram_zeroed;
};

/* What x86_boot_load decided, for logs and tests. */
struct x86_boot_info {
	enum boot_protocol protocol; /* LINUX or PVH */
	bool is_elf;
	uint64_t kernel_addr, kernel_end; /* [load, load + init_size/memsz) */
	uint64_t entry;
	uint64_t initrd_addr, initrd_size;
	uint16_t boot_version;            /* bzImage header version */
};

/*
 * x86_boot_load: load the kernel (and initrd) into `m`, write the command
 * line, boot_params (Linux protocol) or hvm_start_info (PVH), the e820 map,
 * GDT, TSS and identity page tables, and fill the BSP registers:
 *
 *  - Linux 64-bit boot protocol (boot.rst "64-bit BOOT PROTOCOL"): long mode,
 *    paging on with the first 4 GiB identity mapped, CS = 0x10, DS/ES/SS =
 *    0x18, RFLAGS = 0x2, RSI = boot_params, RIP = load address + 0x200
 *    (bzImage) or the ELF entry (vmlinux).
 *  - PVH (Xen's arch-x86/hvm/start_info.h): 32-bit protected mode, paging
 *    off, CS flat 32-bit code, DS/ES/SS flat data, EBX = hvm_start_info,
 *    EIP = XEN_ELFNOTE_PHYS32_ENTRY.
 *
 * Protocol choice: LINUX needs a bzImage or an ELF; PVH needs an ELF with the
 * PHYS32_ENTRY note.  AUTO = PVH for an ELF with the note (as Firecracker),
 * LINUX otherwise.
 *
 * Errors (-EINVAL/-ENOEXEC/-ENOSPC/-EFAULT/-EIO/-ENOMEM/-errno of open) come
 * with one line in err naming the file and the field, e.g. "vmlinuz: setup
 * header magic 'HdrS' missing".  Main thread.
 */
int x86_boot_load(struct gmem *m, const struct x86_boot_cfg *cfg,
		  struct smvmm_x86_regs *bsp, char *err, size_t errlen);

/* x86_boot_load_info: x86_boot_load that also reports what it did (info may
 * be NULL). */
int x86_boot_load_info(struct gmem *m, const struct x86_boot_cfg *cfg,
		       struct smvmm_x86_regs *bsp, struct x86_boot_info *info,
		       char *err, size_t errlen);

/* ---- COM1: 8250/16550A UART ---- */

#define UART8250_RX_CAP 4096 /* RX buffer; the 16550's FIFO, made deeper */

/* Interrupt line callback (COM1: IRQ 4): level 1 asserted, 0 deasserted; only
 * called on changes.  Called with the UART lock held: it must not call back
 * into the UART. */
typedef void (*uart8250_irq_fn)(void *opaque, int level);

struct uart8250 {
	pthread_mutex_t lock;
	int out_fd;
	uart8250_irq_fn irq_fn;
	void *irq_opaque;
	int irq_level;

	uint8_t ier, fcr, lcr, mcr, lsr_err, msr, scr, dll, dlm;
	bool thr_ipending; /* THRE interrupt pending (cleared by IIR read) */
	uint8_t rx[UART8250_RX_CAP];
	size_t rx_head, rx_len;
	uint64_t tx_bytes, tx_errors;
	int closing; /* atomic: uart8250_close() was called */
	/* output size limit (uart8250_set_rotation) */
	uint64_t out_max, out_size;
	int (*rotate_fn)(void *opaque);
	void *rotate_opaque;
};

/*
 * uart8250_init: reset state, output to out_fd (< 0 drops output; the fd is
 * not owned), interrupts through irq_fn(irq_opaque, level) (may be NULL).
 * 0 or -errno (mutex).  Main thread.
 */
int uart8250_init(struct uart8250 *u, int out_fd, uart8250_irq_fn irq_fn,
		  void *irq_opaque);
void uart8250_destroy(struct uart8250 *u);

/*
 * uart8250_set_rotation: limit out_fd to max_bytes (> 0); `size` bytes are
 * in it already.  Before a byte that would exceed the limit, rotate_fn
 * (opaque) is called on the writing (vCPU) thread, under the UART lock; it
 * returns the fd to continue with, whose file is empty, or a negative
 * errno (output is then dropped and counted in tx_errors).  The UART does
 * not own the fds.  Main thread, before the vCPUs start.
 */
void uart8250_set_rotation(struct uart8250 *u, uint64_t max_bytes,
			   uint64_t size, int (*rotate_fn)(void *opaque),
			   void *opaque);

/*
 * uart8250_close: from now on, output that cannot be written at once is
 * dropped (counted in tx_errors) instead of waited for, and a vCPU thread
 * waiting for a full out_fd (a pipe nobody reads, a terminal stopped with
 * XOFF) returns within 100 ms.  Call before stopping the vCPUs so a stuck
 * console cannot hang shutdown.  Any thread.
 */
void uart8250_close(struct uart8250 *u);

/*
 * uart8250_pio: a guest access to register `offset` (0..7, relative to the
 * base port).  `len` bytes go to offsets offset..offset+len-1 (bytes beyond 7
 * read 0xff).  THR writes go to out_fd synchronously (short writes and EINTR
 * retried, EAGAIN waits with poll), so LSR always shows THRE|TEMT.  vCPU
 * thread; takes the UART lock.
 */
void uart8250_pio(void *u, uint16_t offset, uint8_t *data, uint32_t len,
		  bool is_write);

/*
 * uart8250_input: queue bytes from the terminal into the RX buffer and raise
 * the RX interrupt if enabled.  Returns the number of bytes accepted (less
 * than n when the buffer is full; the rest is for the caller to retry).  Any
 * thread (I/O thread); takes the UART lock.
 */
size_t uart8250_input(struct uart8250 *u, const uint8_t *buf, size_t n);

/* uart8250_rx_space: free bytes in the RX buffer.  Any thread. */
size_t uart8250_rx_space(struct uart8250 *u);

/* ---- power management ports ---- */

typedef void (*x86_pm_fn)(void *opaque);

struct x86_pm {
	x86_pm_fn poweroff, reset, panic;
	void *opaque;
	uint8_t sleep_sts; /* WAK_STS (bit 7) after a wake; write 1 to clear */
};

/*
 * x86_pm_init: callbacks for the guest's poweroff, reset and panic reports
 * (any may be NULL); they run on the vCPU thread that made the port access.
 * panic: the guest wrote PVPANIC_PANICKED to the pvpanic port.
 */
void x86_pm_init(struct x86_pm *pm, x86_pm_fn poweroff, x86_pm_fn reset,
		 x86_pm_fn panic, void *opaque);
/* x86_pm_handles: true for the ports x86_pm_pio serves. */
bool x86_pm_handles(uint16_t port);

/* x86_pm_describe: one line per PM port, for the machine plan printout. */
void x86_pm_describe(FILE *f);

/*
 * x86_pm_pio: the PM ports above (0x600-0x602, 0x60, 0x61, 0x64, 0x80).
 * Writing SLP_EN (bit 5) with SLP_TYP (bits 4:2) == X86_PM_S5_SLP_TYP to the
 * sleep control register -> poweroff(); X86_PM_RESET_VALUE to the reset
 * register or 0xfe to port 0x64 -> reset() (ACPI 6.x §4.8.3.6-7);
 * X86_PVPANIC_PANICKED to X86_PVPANIC_PORT -> panic(), whose reads return
 * the supported events (PANICKED only).  Other ports
 * read 0xff.  vCPU thread.
 */
void x86_pm_pio(void *pm, uint16_t port, uint8_t *data, uint32_t len,
		bool is_write);

/*
 * x86_reset_stub: the X86_RESET_STUB_LEN bytes to place at
 * X86_RESET_VECTOR (16-bit real mode: mov al, RESET_VALUE; mov dx, 0x602;
 * out dx, al; then hlt forever).  Pure; any thread.
 */
void x86_reset_stub(uint8_t out[X86_RESET_STUB_LEN]);

/* ---- port I/O routing ---- */

struct x86_pio {
	struct uart8250 *com1; /* may be NULL: COM1 absent (reads 0xff) */
	struct x86_pm *pm;     /* may be NULL */
};

/*
 * x86_pio_dispatch: route a port access: 0x3f8-0x3ff -> com1, PM ports ->
 * pm.  Returns false for a port nobody handles (reads filled with 0xff,
 * writes ignored).  vCPU thread.
 */
bool x86_pio_dispatch(struct x86_pio *p, uint16_t port, uint8_t *data,
		      uint32_t len, bool is_write);

#endif
