// SPDX-License-Identifier: MIT
/*
 * Probe guest interrupts: IDT, local APIC (xAPIC MMIO mode), IOAPIC
 * redirection entries.  Only used with probe.irq=1: a software-emulated KVM
 * without VT-x/SVM cannot deliver interrupts into the guest.
 *
 * Exceptions are always caught (the IDT is loaded at start-up) so a probe
 * bug under QEMU or hardware KVM reports vector and RIP instead of a silent
 * triple fault.
 */
#include "probe.h"

struct idt_gate {
	u16 off_lo, sel;
	u8 ist, type;
	u16 off_mid;
	u32 off_hi, rsvd;
} __attribute__((packed));

static struct idt_gate idt[256] __aligned(16);

extern char irq_stubs[]; /* head.S: 256 stubs, 16 bytes apart */

struct irq_frame {
	u64 r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

static struct {
	irq_handler_t fn;
	void *arg;
} handlers[256];

/* xAPIC registers (SDM Vol. 3 §11.4.1, offsets from the APIC base) */
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED 0x10000
#define LVT_PERIODIC 0x20000
#define SPURIOUS_VECTOR 0xff
#define TIMER_VECTOR 0xef

static u64 lapic_base;

static u32 lapic_read(u32 reg)
{
	return mmio_read32(lapic_base + reg);
}
static void lapic_write(u32 reg, u32 v)
{
	mmio_write32(lapic_base + reg, v);
}

void irq_dispatch(struct irq_frame *f)
{
	u8 v = (u8)f->vector;

	if (f->vector < 32) {
		kprintf("not ok %u - unexpected exception %u (error 0x%llx) at rip 0x%llx\n",
			++tap_count, (unsigned)f->vector,
			(unsigned long long)f->error, (unsigned long long)f->rip);
		tap_failed++;
		tap_finish();
	}
	if (v == SPURIOUS_VECTOR)
		return; /* no EOI for spurious interrupts (SDM §11.9) */
	if (handlers[v].fn)
		handlers[v].fn(v, handlers[v].arg);
	if (lapic_base)
		lapic_write(LAPIC_EOI, 0);
}

void idt_init(void)
{
	u16 cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (int i = 0; i < 256; i++) {
		u64 a = (uintptr_t)irq_stubs + 16 * i;
		idt[i] = (struct idt_gate){
			.off_lo = (u16)a,
			.sel = cs,
			.type = 0x8e, /* present, DPL 0, 64-bit interrupt gate */
			.off_mid = (u16)(a >> 16),
			.off_hi = (u32)(a >> 32),
		};
	}
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(d));
}

int lapic_init(void)
{
	u64 base = acpi.lapic_addr;

	if (!base) /* IA32_APIC_BASE, SDM §11.4.4 */
		base = rdmsr(0x1b) & ~0xfffull;
	if (!phys_ok(base, 0x1000))
		return -1;
	lapic_base = base;
	lapic_write(LAPIC_TPR, 0);
	/* Mask LINT0/1: the BSP resets with LINT0 in ExtINT mode and a stray
	 * 8259 interrupt must not be taken for a device's. */
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_LVT_LINT1, LVT_MASKED);
	lapic_write(LAPIC_LVT_ERROR, LVT_MASKED);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR); /* APIC enable */
	return 0;
}

static void timer_tick(u8 v, void *arg)
{
	(void)v;
	(void)arg; /* only wakes hlt; the waiter checks its deadline */
}

/* Periodic wake-ups so that a wait in hlt can time out. */
void lapic_timer_start(u32 count)
{
	handlers[TIMER_VECTOR].fn = timer_tick;
	lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | TIMER_VECTOR);
	lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_stop(void)
{
	lapic_write(LAPIC_TIMER_INIT, 0);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
}

/* ---- IOAPIC (82093AA datasheet: IOREGSEL at +0, IOWIN at +0x10) ---- */
static u32 ioapic_read(u32 base, u32 reg)
{
	mmio_write32(base, reg);
	return mmio_read32(base + 0x10);
}
static void ioapic_write(u32 base, u32 reg, u32 v)
{
	mmio_write32(base, reg);
	mmio_write32(base + 0x10, v);
}

/* Find the IOAPIC serving a GSI (MADT: GSI base + redirection entries). */
static int ioapic_for_gsi(u32 gsi, u32 *base, u32 *pin)
{
	for (int i = 0; i < acpi.nioapic; i++) {
		u32 b = acpi.ioapic[i].addr;
		if (!b || !phys_ok(b, 0x20))
			continue;
		u32 ver = ioapic_read(b, 1);
		u32 n = ((ver >> 16) & 0xff) + 1;
		if (gsi >= acpi.ioapic[i].gsi_base &&
		    gsi < acpi.ioapic[i].gsi_base + n) {
			*base = b;
			*pin = gsi - acpi.ioapic[i].gsi_base;
			return 0;
		}
	}
	return -1;
}

int irq_route(u32 gsi, bool edge, bool active_low, u8 vector,
	      irq_handler_t fn, void *arg)
{
	u32 base, pin;
	u32 bsp;

	if (ioapic_for_gsi(gsi, &base, &pin))
		return -1;
	handlers[vector].fn = fn;
	handlers[vector].arg = arg;
	bsp = lapic_read(LAPIC_ID) >> 24;
	/* Fixed delivery, physical destination = this CPU. */
	u32 lo = vector | (active_low ? 1u << 13 : 0) | (edge ? 0 : 1u << 15);
	ioapic_write(base, 0x10 + 2 * pin, LVT_MASKED); /* mask while editing */
	ioapic_write(base, 0x11 + 2 * pin, bsp << 24);
	ioapic_write(base, 0x10 + 2 * pin, lo);
	return 0;
}

void irq_unroute(u32 gsi)
{
	u32 base, pin;

	if (!ioapic_for_gsi(gsi, &base, &pin))
		ioapic_write(base, 0x10 + 2 * pin, LVT_MASKED);
}
