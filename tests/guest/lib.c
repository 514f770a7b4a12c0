// SPDX-License-Identifier: MIT
/*
 * Probe guest runtime: string functions (gcc may emit calls to them even in
 * freestanding code), a polled 8250 console, a small printf, TAP and time.
 */
#include "probe.h"

void *memset(void *s, int c, size_t n)
{
	void *d = s;

	/* One instruction: cheap even where each guest instruction traps. */
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *dd = d;

	__asm__ volatile("rep movsb" : "+D"(dd), "+S"(s), "+c"(n) : : "memory");
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	u8 *dp = d;
	const u8 *sp = s;

	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (u8)a[i] < (u8)b[i] ? -1 : 1;
		if (!a[i])
			break;
	}
	return 0;
}

/* ---- COM1: 8250/16550 at 0x3f8, polled ---- */
#define COM1 0x3f8
#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void serial_putc(char c)
{
	/* Bounded wait for THRE: a missing UART reads 0xff (THRE set), a
	 * broken one must not hang the probe forever. */
	for (int i = 0; i < 100000; i++) {
		if (inb(COM1 + UART_LSR) & UART_LSR_THRE)
			break;
		cpu_relax();
	}
	outb(COM1 + UART_THR, (u8)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

/* ---- printf subset: %% %c %s %d %i %u %x %X %p; l/ll/z, width, 0, -, .prec for %s ---- */
struct outbuf {
	char *buf;
	size_t size, len;
};

static void out(struct outbuf *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_num(struct outbuf *o, u64 v, unsigned base, bool neg,
		    int width, bool zero, bool left, bool upper)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (!left && !zero)
		for (; width > len; width--)
			out(o, ' ');
	if (neg)
		out(o, '-');
	if (!left && zero)
		for (; width > len; width--)
			out(o, '0');
	while (n)
		out(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			out(o, ' ');
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out(&o, *fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int prec = -1;
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case '%':
			out(&o, '%');
			break;
		case 'c':
			out(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int l = 0;
			while (s[l] && (prec < 0 || l < prec))
				l++;
			if (!left)
				for (; width > l; width--)
					out(&o, ' ');
			for (int k = 0; k < l; k++)
				out(&o, s[k]);
			for (; width > l; width--)
				out(&o, ' ');
			break;
		}
		case 'd':
		case 'i': {
			long long v = lng ? va_arg(ap, long long) : va_arg(ap, int);
			out_num(&o, v < 0 ? -(u64)v : (u64)v, 10, v < 0, width,
				zero, left, false);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			u64 v = lng ? va_arg(ap, unsigned long long)
				    : va_arg(ap, unsigned int);
			out_num(&o, v, *fmt == 'u' ? 10 : 16, false, width, zero,
				left, *fmt == 'X');
			break;
		}
		case 'p':
			out(&o, '0');
			out(&o, 'x');
			out_num(&o, (uintptr_t)va_arg(ap, void *), 16, false,
				width, zero, left, false);
			break;
		case '\0':
			fmt--;
			break;
		default:
			out(&o, '%');
			out(&o, *fmt);
		}
	}
	if (o.size)
		o.buf[o.len < o.size ? o.len : o.size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void kprintf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_puts(buf);
}

/* ---- TAP ---- */
unsigned tap_count, tap_failed;

bool vtap(bool ok, const char *fmt, va_list ap)
{
	char buf[400];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	tap_count++;
	if (!ok)
		tap_failed++;
	kprintf("%s %u - %s\n", ok ? "ok" : "not ok", tap_count, buf);
	return ok;
}

bool tap(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vtap(ok, fmt, ap);
	va_end(ap);
	return ok;
}

__noreturn void tap_finish(void)
{
	kprintf("# probe: done, %u tests, %u failed\n", tap_count, tap_failed);
	kprintf("1..%u\n", tap_count);
	acpi_poweroff();
	kprintf("# probe: power-off failed, halting\n");
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* ---- time ---- */
u64 tsc_khz;

void time_init(void)
{
	u32 a, b, c, d, max;

	cpuid(0, 0, &max, &b, &c, &d);
	if (max >= 0x15) {
		/* CPUID 0x15: TSC/crystal ratio EBX/EAX, crystal Hz in ECX. */
		cpuid(0x15, 0, &a, &b, &c, &d);
		if (a && b && c)
			tsc_khz = (u64)c * b / a / 1000;
	}
	if (!tsc_khz && max >= 0x16) {
		cpuid(0x16, 0, &a, &b, &c, &d); /* base MHz in EAX */
		if (a & 0xffff)
			tsc_khz = (u64)(a & 0xffff) * 1000;
	}
	if (!tsc_khz) {
		/* Hypervisor timing leaf (KVM/VMware): EAX = TSC kHz. */
		cpuid(0x40000000, 0, &a, &b, &c, &d);
		if (a >= 0x40000010 && a < 0x40010000) {
			cpuid(0x40000010, 0, &a, &b, &c, &d);
			tsc_khz = a;
		}
	}
	if (!tsc_khz || tsc_khz > 10000000)
		tsc_khz = 3000000;
}

u64 deadline_ms(u64 ms)
{
	return rdtsc() + ms * tsc_khz;
}

bool expired(u64 deadline)
{
	return (int64_t)(rdtsc() - deadline) >= 0;
}
