/* SPDX-License-Identifier: MIT */
/*
 * smvmm probe guest: shared declarations.
 *
 * The probe is freestanding x86-64 code (no libc) that runs identity-mapped
 * at low physical addresses, polls COM1 and prints TAP.  Everything it reads
 * from the machine (boot_params, e820, ACPI tables, virtio registers) is
 * treated as untrusted: a bad value gives a "not ok" line, never a fault.
 */
#ifndef PROBE_H
#define PROBE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define __aligned(x) __attribute__((aligned(x)))
#define __noreturn __attribute__((noreturn))
#define __printf(a, b) __attribute__((format(printf, a, b)))

/* Compiler barrier: x86 is TSO, so ordering stores to guest RAM against each
 * other and against an MMIO store only needs the compiler to keep program
 * order (VIRTIO 1.2 §2.7.13: virtio_wmb() is a compiler barrier on x86). */
#define barrier() __asm__ volatile("" ::: "memory")
/* Full barrier without SSE (mfence is fine too, but lock-prefixed ops are the
 * classic general-register-only choice). */
#define mb() __asm__ volatile("lock; addl $0,(%%rsp)" ::: "memory", "cc")

/* ---- port and MMIO access (plain mov so any VMM can emulate it) ---- */
static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(u16 port, u16 v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(u16 port, u32 v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline u32 mmio_read32(u64 addr)
{
	return *(volatile u32 *)(uintptr_t)addr;
}
static inline void mmio_write32(u64 addr, u32 v)
{
	*(volatile u32 *)(uintptr_t)addr = v;
}
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid"
			 : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(sub));
}
static inline u64 rdmsr(u32 msr)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}

/* Unaligned little-endian loads from untrusted byte buffers. */
static inline u16 get16(const void *p)
{
	const u8 *b = p;
	return (u16)(b[0] | b[1] << 8);
}
static inline u32 get32(const void *p)
{
	const u8 *b = p;
	return (u32)b[0] | (u32)b[1] << 8 | (u32)b[2] << 16 | (u32)b[3] << 24;
}
static inline u64 get64(const void *p)
{
	const u8 *b = p;
	return (u64)get32(b) | (u64)get32(b + 4) << 32;
}

/* ---- lib.c ---- */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

void serial_putc(char c);
void serial_puts(const char *s);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);
void kprintf(const char *fmt, ...) __printf(1, 2);

/* TAP: one numbered test line; returns ok.  The description follows the
 * number; a " # detail" part may be part of fmt. */
bool tap(bool ok, const char *fmt, ...) __printf(2, 3);
bool vtap(bool ok, const char *fmt, va_list ap);
extern unsigned tap_count, tap_failed;
/* Print "# probe: done ...", the plan "1..N" and power off (acpi.c). */
__noreturn void tap_finish(void);

/* Time: TSC-based deadlines.  tsc_khz is from CPUID 0x15/0x16/0x40000010,
 * else an assumed 3 GHz (long enough on slower hosts). */
extern u64 tsc_khz;
void time_init(void);
u64 deadline_ms(u64 ms);
bool expired(u64 deadline);

/* ---- boot.c ---- */
/* struct boot_params (Linux Documentation/arch/x86/zero-page.rst) offsets */
#define BP_ACPI_RSDP_ADDR 0x070 /* u64 */
#define BP_EXT_CMD_LINE_PTR 0x0c8 /* u32 */
#define BP_E820_ENTRIES 0x1e8 /* u8 */
#define BP_SENTINEL 0x1ef /* u8 */
#define BP_HDR 0x1f1 /* struct setup_header */
#define BP_BOOT_FLAG 0x1fe /* u16 0xAA55 */
#define BP_HEADER 0x202 /* "HdrS" */
#define BP_VERSION 0x206 /* u16 */
#define BP_TYPE_OF_LOADER 0x210 /* u8 */
#define BP_LOADFLAGS 0x211 /* u8 */
#define BP_CMD_LINE_PTR 0x228 /* u32 */
#define BP_CMDLINE_SIZE 0x238 /* u32 */
#define BP_E820_TABLE 0x2d0 /* 128 x {u64 addr, u64 size, u32 type} */
#define E820_MAX 128

enum e820_type {
	E820_RAM = 1,
	E820_RESERVED = 2,
	E820_ACPI = 3,
	E820_NVS = 4,
	E820_UNUSABLE = 5,
};

struct e820_entry {
	u64 addr;
	u64 size;
	u32 type;
};

enum boot_kind { BOOT_LINUX64, BOOT_PVH };

struct boot_info {
	enum boot_kind kind;
	u64 bp_addr;          /* physical address of boot_params */
	const u8 *bp;         /* == bp_addr (identity map) */
	/* PVH only: hvm_start_info facts, and what went wrong converting it */
	u32 pvh_magic, pvh_version, pvh_memmap_entries, pvh_empty_entries;
	const char *pvh_error; /* NULL when the conversion was clean */
};
extern struct boot_info boot;

/* Image bounds from the linker script. */
extern char _start[], _edata[], __bss_start[], __bss_end[], _end[];

/* The guest program: the probe or a crash guest.  bp is boot_params. */
__noreturn void guest_main(void);
/* The first line on COM1, printed before anything else (the benchmark
 * measures time to first serial byte). */
extern const char guest_banner[];

/* Physical memory the probe may dereference: [0, 4 GiB) is identity mapped
 * (2 MiB pages, the top GiB uncached for MMIO). */
#define IDMAP_LIMIT 0x100000000ull
static inline bool phys_ok(u64 addr, u64 len)
{
	return addr + len >= addr && addr + len <= IDMAP_LIMIT;
}

/* ---- acpi.c ---- */
#define MAX_CPUS 64
#define MAX_IOAPICS 8
#define MAX_ISOS 16
#define MAX_VDEVS 32

struct gas {
	u8 space; /* 0 system memory, 1 system I/O */
	u8 bit_width, bit_offset, access_size;
	u64 addr;
};

struct vmmio {
	char name[5];       /* AML device name, e.g. "VR00" */
	u64 base, size;     /* from Memory32Fixed / DWord / QWord memory */
	u32 irq;            /* GSI */
	bool edge, active_low;
	bool crs_ok;
	const char *crs_error;
};

struct acpi {
	bool rsdp_ok;
	u64 rsdp;
	u8 rsdp_rev;
	u64 fadt, madt, dsdt;
	bool sleep_ok;      /* have a way to power off */
	bool hw_reduced;
	struct gas sleep_ctl, sleep_sts;
	u32 pm1a_cnt;       /* legacy fixed-hardware PM1a_CNT I/O port */
	bool s5_found;
	u8 slp_typ;
	u64 lapic_addr;
	int ncpus;
	u32 apic_id[MAX_CPUS];
	int nioapic;
	struct { u8 id; u32 addr, gsi_base; } ioapic[MAX_IOAPICS];
	int niso;
	struct { u8 src; u32 gsi; u16 flags; } iso[MAX_ISOS];
	int ndev;
	struct vmmio dev[MAX_VDEVS];
};
extern struct acpi acpi;

/* Find and check everything; prints TAP lines.  Needs the e820 view. */
void acpi_probe(const struct e820_entry *e820, int n);
/* Write SLP_TYP|SLP_EN to the FADT sleep control register (ACPI 6.5
 * §4.8.3.7) or PM1a_CNT; returns only if the machine is still running. */
void acpi_poweroff(void);
/* Minimal variant for the crash guests: find FADT and \_S5 quietly. */
void acpi_find_quiet(void);

/* ---- irq.c ---- */
typedef void (*irq_handler_t)(u8 vector, void *arg);
void idt_init(void);
int irq_route(u32 gsi, bool edge, bool active_low, u8 vector,
	      irq_handler_t fn, void *arg);
void irq_unroute(u32 gsi);
int lapic_init(void);
void lapic_timer_start(u32 count);
void lapic_timer_stop(void);
static inline void irq_enable(void)
{
	__asm__ volatile("sti" ::: "memory");
}
static inline void irq_disable(void)
{
	__asm__ volatile("cli" ::: "memory");
}

/* ---- virtio.c ---- */
struct probe_opts {
	int vcpus;          /* -1 = not given */
	int devices;        /* expected LNRO0005 count, -1 = not given */
	int rng;            /* expected virtio-rng count, -1 = not given */
	int nmmio;          /* probe.mmio list, nmmio = -1 when not given */
	struct { u64 base; u32 irq; } mmio[MAX_VDEVS];
	bool irq;           /* drive devices with interrupts */
	u32 rng_bytes;
	u32 timeout_ms;
	bool spin;          /* probe.spin=1: never power off (stop tests) */
};
extern struct probe_opts opts;
void virtio_probe_all(void);

/*
 * Per-device drivers, one file each (blk.c, vsock.c): drive_<dev> runs the
 * device's TAP tests on an already reset device (VIRTIO 1.2 §3.1.1 from
 * ACKNOWLEDGE on); <dev>_option parses a "probe.<dev>..." cmdline option
 * (key without the "probe." prefix, not NUL-terminated) and returns false if
 * it is not its option or the value is bad; <dev>_summary prints the
 * device-count checks after all devices were driven.
 */
/*
 * probe_parse_u64: the n characters at s as a decimal or 0x-hex number no
 * larger than max; false for anything else (empty, junk, overflow).
 */
bool probe_parse_u64(const char *s, size_t n, u64 max, u64 *v);

struct vdev;
void drive_blk(struct vdev *d, int idx);
bool blk_option(const char *key, size_t klen, const char *val, size_t vlen);
void blk_summary(int nblk);
void drive_vsock(struct vdev *d, int idx);
bool vsock_option(const char *key, size_t klen, const char *val, size_t vlen);
void vsock_summary(int nvsock);

#endif
