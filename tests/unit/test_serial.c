// SPDX-License-Identifier: MIT
/*
 * COM1 8250/16550A UART (core/arch/x86_64/serial8250.c) against the PC16550D
 * register description, plus the PM ports and the port I/O router (pm.c).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arch/x86_64/x86.h"
#include "serial_log.h"

#define RBR 0
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

struct irqlog {
	int level;
	int edges; /* number of 0->1 transitions */
	int calls;
};

static void irq_cb(void *opaque, int level)
{
	struct irqlog *l = opaque;

	if (level && !l->level)
		l->edges++;
	l->level = level;
	l->calls++;
}

static uint8_t rd(struct uart8250 *u, uint16_t off)
{
	uint8_t v = 0x5a;

	uart8250_pio(u, off, &v, 1, false);
	return v;
}

static void wr(struct uart8250 *u, uint16_t off, uint8_t v)
{
	uart8250_pio(u, off, &v, 1, true);
}

static int pipefd[2];
static struct uart8250 u;
static struct irqlog il;

static void setup(void)
{
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	memset(&il, 0, sizeof(il));
	ck_assert_int_eq(uart8250_init(&u, pipefd[1], irq_cb, &il), 0);
}

static void teardown(void)
{
	uart8250_destroy(&u);
	close(pipefd[0]);
	close(pipefd[1]);
}

START_TEST(test_reset_state)
{
	ck_assert_uint_eq(rd(&u, IER), 0);
	ck_assert_uint_eq(rd(&u, IIR), 0x01); /* no interrupt, FIFOs off */
	ck_assert_uint_eq(rd(&u, LCR), 0);
	ck_assert_uint_eq(rd(&u, MCR), 0);
	ck_assert_uint_eq(rd(&u, LSR), 0x60); /* THRE | TEMT */
	ck_assert_uint_eq(rd(&u, MSR) & 0xf0, 0xb0); /* DCD DSR CTS */
	ck_assert_uint_eq(rd(&u, RBR), 0);   /* empty */
	ck_assert_int_eq(il.calls, 0);
}
END_TEST

START_TEST(test_output)
{
	char buf[16];

	wr(&u, THR, 'h');
	wr(&u, THR, 'i');
	ck_assert_uint_eq(rd(&u, LSR) & 0x60, 0x60);
	ck_assert_int_eq(read(pipefd[0], buf, sizeof(buf)), 2);
	ck_assert(!memcmp(buf, "hi", 2));
	ck_assert_uint_eq(u.tx_bytes, 2);
	ck_assert_int_eq(il.calls, 0); /* IER 0: no interrupts */
}
END_TEST

START_TEST(test_dlab_scratch)
{
	wr(&u, LCR, 0x83); /* DLAB + 8N1 */
	wr(&u, RBR, 0x01); /* DLL */
	wr(&u, IER, 0x02); /* DLM */
	ck_assert_uint_eq(rd(&u, RBR), 0x01);
	ck_assert_uint_eq(rd(&u, IER), 0x02);
	wr(&u, LCR, 0x03);
	ck_assert_uint_eq(rd(&u, LCR), 0x03);
	ck_assert_uint_eq(rd(&u, IER), 0x00); /* the real IER untouched */
	wr(&u, IER, 0xff);
	ck_assert_uint_eq(rd(&u, IER), 0x0f); /* upper bits reserved */
	wr(&u, IER, 0);
	wr(&u, LCR, 0x80);
	ck_assert_uint_eq(rd(&u, IER), 0x02); /* DLM kept */
	ck_assert_uint_eq(rd(&u, RBR), 0x01);
	wr(&u, LCR, 0x03);
	/* a THR write with DLAB set is a divisor write, not output */
	wr(&u, LCR, 0x80);
	wr(&u, THR, 'X');
	wr(&u, LCR, 0x03);
	ck_assert_uint_eq(u.tx_bytes, 0);
	wr(&u, SCR, 0xa5);
	ck_assert_uint_eq(rd(&u, SCR), 0xa5);
}
END_TEST

START_TEST(test_fifo_iir_bits)
{
	wr(&u, FCR, 0x07);
	ck_assert_uint_eq(rd(&u, IIR), 0xc1);
	wr(&u, FCR, 0x00);
	ck_assert_uint_eq(rd(&u, IIR), 0x01);
}
END_TEST

START_TEST(test_thre_interrupt)
{
	/* Enabling ETBEI with THR empty raises THRE at once */
	wr(&u, IER, 0x02);
	ck_assert_int_eq(il.level, 1);
	ck_assert_uint_eq(rd(&u, IIR), 0x02);
	/* reading IIR with THRE as the source clears it */
	ck_assert_int_eq(il.level, 0);
	ck_assert_uint_eq(rd(&u, IIR), 0x01);
	/* every write empties THR again: another THRE interrupt */
	wr(&u, THR, 'a');
	ck_assert_int_eq(il.level, 1);
	ck_assert_int_eq(il.edges, 2);
	/* a THR write also clears it before re-raising; disabling drops it */
	wr(&u, IER, 0x00);
	ck_assert_int_eq(il.level, 0);
	ck_assert_uint_eq(rd(&u, IIR), 0x01);
}
END_TEST

START_TEST(test_rx_interrupt_and_fifo)
{
	const uint8_t in[] = "abc";

	wr(&u, IER, 0x01);
	ck_assert_int_eq(il.level, 0);
	ck_assert_uint_eq(uart8250_input(&u, in, 3), 3);
	ck_assert_int_eq(il.level, 1);
	ck_assert_uint_eq(rd(&u, LSR) & 0x01, 0x01);
	ck_assert_uint_eq(rd(&u, IIR), 0x04);
	ck_assert_uint_eq(rd(&u, RBR), 'a');
	ck_assert_uint_eq(rd(&u, RBR), 'b');
	ck_assert_int_eq(il.level, 1);
	ck_assert_uint_eq(rd(&u, RBR), 'c');
	ck_assert_int_eq(il.level, 0);
	ck_assert_uint_eq(rd(&u, LSR) & 0x01, 0);
	ck_assert_uint_eq(rd(&u, IIR), 0x01);

	/* RX data has priority over THRE (PC16550D Table 4) */
	wr(&u, IER, 0x03);
	uart8250_input(&u, in, 1);
	ck_assert_uint_eq(rd(&u, IIR), 0x04);
	rd(&u, RBR);
	ck_assert_uint_eq(rd(&u, IIR), 0x02);

	/* FCR bit 1 clears the receive FIFO */
	uart8250_input(&u, in, 3);
	wr(&u, FCR, 0x03);
	ck_assert_uint_eq(rd(&u, LSR) & 0x01, 0);
}
END_TEST

START_TEST(test_rx_full_and_overrun)
{
	static uint8_t big[UART8250_RX_CAP + 10];

	memset(big, 'q', sizeof(big));
	ck_assert_uint_eq(uart8250_rx_space(&u), UART8250_RX_CAP);
	ck_assert_uint_eq(uart8250_input(&u, big, sizeof(big)), UART8250_RX_CAP);
	ck_assert_uint_eq(uart8250_rx_space(&u), 0);
	ck_assert_uint_eq(uart8250_input(&u, big, 1), 0);
	/* no data lost from the terminal side: the caller retries; no OE */
	ck_assert_uint_eq(rd(&u, LSR) & 0x02, 0);

	/* Loopback into a full FIFO is an overrun (OE), cleared by LSR read */
	wr(&u, MCR, 0x10);
	wr(&u, THR, 'z');
	wr(&u, IER, 0x04);
	ck_assert_int_eq(il.level, 1);
	ck_assert_uint_eq(rd(&u, IIR), 0x06);
	ck_assert_uint_eq(rd(&u, LSR) & 0x03, 0x03);
	ck_assert_uint_eq(rd(&u, LSR) & 0x02, 0);
	wr(&u, IER, 0);
	for (size_t i = 0; i < UART8250_RX_CAP; i++)
		ck_assert_uint_eq(rd(&u, RBR), 'q');
	ck_assert_uint_eq(rd(&u, LSR) & 0x01, 0);
}
END_TEST

START_TEST(test_loopback)
{
	char buf[4];

	wr(&u, MCR, 0x10 | 0x0f); /* LOOP + DTR RTS OUT1 OUT2 */
	ck_assert_uint_eq(rd(&u, MCR), 0x1f);
	/* MSR mirrors MCR: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2 */
	ck_assert_uint_eq(rd(&u, MSR) & 0xf0, 0xf0);
	wr(&u, MCR, 0x10);
	/* CTS, DSR, DCD changed; RI trailing edge */
	ck_assert_uint_eq(rd(&u, MSR), 0x0f);
	ck_assert_uint_eq(rd(&u, MSR), 0x00); /* deltas clear on read */
	wr(&u, THR, 'L');
	ck_assert_uint_eq(rd(&u, LSR) & 0x61, 0x61);
	ck_assert_uint_eq(rd(&u, RBR), 'L');
	/* nothing went out */
	ck_assert_uint_eq(u.tx_bytes, 0);
	fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	ck_assert_int_eq(read(pipefd[0], buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	/* terminal input is cut off in loopback */
	ck_assert_uint_eq(uart8250_input(&u, (const uint8_t *)"x", 1), 0);

	/* modem status interrupt */
	wr(&u, IER, 0x08);
	wr(&u, MCR, 0x12); /* RTS -> CTS */
	ck_assert_int_eq(il.level, 1);
	ck_assert_uint_eq(rd(&u, IIR), 0x00);
	ck_assert_uint_eq(rd(&u, MSR), 0x11);
	ck_assert_int_eq(il.level, 0);
	wr(&u, MCR, 0x00);
	ck_assert_uint_eq(rd(&u, MSR) & 0xf0, 0xb0);
}
END_TEST

START_TEST(test_wide_and_out_of_range)
{
	uint8_t d[4] = { 0x11, 0x22, 0x33, 0x44 };

	/* a 2-byte write at offset 6 writes MSR (ignored) and SCR */
	uart8250_pio(&u, 6, d, 2, true);
	ck_assert_uint_eq(rd(&u, SCR), 0x22);
	memset(d, 0, sizeof(d));
	uart8250_pio(&u, 7, d, 2, false);
	ck_assert_uint_eq(d[0], 0x22);
	ck_assert_uint_eq(d[1], 0xff);
	uart8250_pio(&u, 200, d, 4, false);
	ck_assert_uint_eq(d[3], 0xff);
	uart8250_pio(&u, 200, d, 4, true);
}
END_TEST

START_TEST(test_no_output_fd)
{
	struct uart8250 v;

	ck_assert_int_eq(uart8250_init(&v, -1, NULL, NULL), 0);
	wr(&v, IER, 0x03);
	wr(&v, THR, 'x');
	ck_assert_uint_eq(rd(&v, LSR) & 0x60, 0x60);
	uart8250_input(&v, (const uint8_t *)"y", 1);
	ck_assert_uint_eq(rd(&v, RBR), 'y');
	uart8250_destroy(&v);
}
END_TEST

static void *drain_later(void *arg)
{
	int fd = *(int *)arg;
	static char sink[1 << 20];
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	size_t total = 0;
	char last = 0;

	nanosleep(&ts, NULL);
	fcntl(fd, F_SETFL, 0);
	for (;;) {
		ssize_t r = read(fd, sink, sizeof(sink));

		if (r <= 0)
			break;
		total += (size_t)r;
		last = sink[r - 1];
		if (last == 'Z')
			break;
	}
	return (void *)(intptr_t)last;
}

/* Output to a full non-blocking pipe waits instead of dropping bytes. */
START_TEST(test_output_backpressure)
{
	char chunk[4096];
	pthread_t t;
	void *last;

	memset(chunk, '.', sizeof(chunk));
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	while (write(pipefd[1], chunk, sizeof(chunk)) > 0)
		;
	while (write(pipefd[1], chunk, 1) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(pthread_create(&t, NULL, drain_later, &pipefd[0]), 0);
	wr(&u, THR, 'Z'); /* blocks in poll until the reader drains */
	pthread_join(t, &last);
	ck_assert_int_eq((int)(intptr_t)last, 'Z');
	ck_assert_uint_eq(u.tx_bytes, 1);
	ck_assert_uint_eq(u.tx_errors, 0);
}
END_TEST

static void *close_later(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	uart8250_close(arg);
	return NULL;
}

/*
 * A blocking pipe nobody reads (smvmm | something-stuck): the vCPU's THR
 * write waits, and uart8250_close() ends the wait within its 100 ms poll, so
 * shutdown cannot hang; the byte is counted as dropped.
 */
START_TEST(test_output_close_unblocks)
{
	char chunk[4096];
	struct timespec t0, t1;
	pthread_t t;
	long ms;

	memset(chunk, '.', sizeof(chunk));
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	while (write(pipefd[1], chunk, sizeof(chunk)) > 0)
		;
	while (write(pipefd[1], chunk, 1) > 0)
		;
	fcntl(pipefd[1], F_SETFL, 0); /* blocking, like a shell pipe */
	ck_assert_int_eq(pthread_create(&t, NULL, close_later, &u), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	wr(&u, THR, 'Z');
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_msg(ms >= 150 && ms < 2000, "THR write returned after %ld ms", ms);
	ck_assert_uint_eq(u.tx_bytes, 0);
	ck_assert_uint_eq(u.tx_errors, 1);
	/* After close, a full pipe drops the byte after one poll timeout. */
	wr(&u, THR, 'Y');
	ck_assert_uint_eq(u.tx_errors, 2);
}
END_TEST

START_TEST(test_output_epipe)
{
	signal(SIGPIPE, SIG_IGN); /* the VMM ignores SIGPIPE, too */
	close(pipefd[0]);
	pipefd[0] = open("/dev/null", O_RDONLY);
	wr(&u, THR, 'x');
	ck_assert_uint_eq(u.tx_errors, 1);
	ck_assert_uint_eq(rd(&u, LSR) & 0x60, 0x60);
}
END_TEST

static void *reader_thread(void *arg)
{
	struct uart8250 *v = arg;
	size_t got = 0;

	while (got < 100000) {
		if (rd(v, LSR) & 1) {
			uint8_t c = rd(v, RBR);

			if (c != (uint8_t)(got & 0xff))
				return (void *)1;
			got++;
		}
	}
	return NULL;
}

/* Concurrent terminal input and guest reads keep every byte in order. */
START_TEST(test_concurrent_input)
{
	pthread_t t;
	void *res;
	size_t sent = 0;

	wr(&u, IER, 0x01);
	ck_assert_int_eq(pthread_create(&t, NULL, reader_thread, &u), 0);
	while (sent < 100000) {
		uint8_t b[64];
		size_t n = 0;

		for (; n < sizeof(b) && sent + n < 100000; n++)
			b[n] = (uint8_t)((sent + n) & 0xff);
		sent += uart8250_input(&u, b, n);
	}
	pthread_join(t, &res);
	ck_assert_ptr_null(res);
}
END_TEST

/* --- PM ports and routing --- */

static int poweroffs, resets, panics;

static void on_poweroff(void *o)
{
	(void)o;
	poweroffs++;
}

static void on_reset(void *o)
{
	(void)o;
	resets++;
}

static void on_panic(void *o)
{
	(void)o;
	panics++;
}

START_TEST(test_pm)
{
	struct x86_pm pm;
	uint8_t v;

	poweroffs = resets = 0;
	x86_pm_init(&pm, on_poweroff, on_reset, on_panic, NULL);

	v = (X86_PM_S5_SLP_TYP << 2); /* no SLP_EN */
	x86_pm_pio(&pm, X86_PM_SLEEP_CTL_PORT, &v, 1, true);
	v = (3 << 2) | 0x20; /* S3: not supported, ignored */
	x86_pm_pio(&pm, X86_PM_SLEEP_CTL_PORT, &v, 1, true);
	ck_assert_int_eq(poweroffs, 0);
	v = (X86_PM_S5_SLP_TYP << 2) | 0x20;
	x86_pm_pio(&pm, X86_PM_SLEEP_CTL_PORT, &v, 1, true);
	ck_assert_int_eq(poweroffs, 1);

	v = X86_PM_RESET_VALUE + 1;
	x86_pm_pio(&pm, X86_PM_RESET_PORT, &v, 1, true);
	ck_assert_int_eq(resets, 0);
	v = X86_PM_RESET_VALUE;
	x86_pm_pio(&pm, X86_PM_RESET_PORT, &v, 1, true);
	ck_assert_int_eq(resets, 1);
	v = 0xfe;
	x86_pm_pio(&pm, X86_I8042_CMD_PORT, &v, 1, true);
	ck_assert_int_eq(resets, 2);
	v = 0xd1;
	x86_pm_pio(&pm, X86_I8042_CMD_PORT, &v, 1, true);
	ck_assert_int_eq(resets, 2);

	/* reads: status registers 0, harmless ports 0 */
	v = 0xaa;
	x86_pm_pio(&pm, X86_PM_SLEEP_STS_PORT, &v, 1, false);
	ck_assert_uint_eq(v, 0);
	v = 0xaa;
	x86_pm_pio(&pm, X86_I8042_CMD_PORT, &v, 1, false);
	ck_assert_uint_eq(v, 0);
	v = 0x12;
	x86_pm_pio(&pm, 0x80, &v, 1, true);
	x86_pm_pio(&pm, 0x61, &v, 1, true);
	ck_assert_int_eq(poweroffs + resets, 3);
	ck_assert(x86_pm_handles(0x600) && x86_pm_handles(0x64) &&
		  x86_pm_handles(0x80) && !x86_pm_handles(0x3f8) &&
		  !x86_pm_handles(0x70));

	/* pvpanic: reads offer PANICKED only; only that bit ends the VM */
	panics = 0;
	v = 0;
	x86_pm_pio(&pm, X86_PVPANIC_PORT, &v, 1, false);
	ck_assert_uint_eq(v, X86_PVPANIC_PANICKED);
	v = 0x02; /* CRASH_LOADED: not offered, ignored */
	x86_pm_pio(&pm, X86_PVPANIC_PORT, &v, 1, true);
	ck_assert_int_eq(panics, 0);
	v = X86_PVPANIC_PANICKED;
	x86_pm_pio(&pm, X86_PVPANIC_PORT, &v, 1, true);
	ck_assert_int_eq(panics, 1);
	ck_assert_int_eq(poweroffs + resets, 3);
	ck_assert(x86_pm_handles(X86_PVPANIC_PORT));

	/* NULL callbacks are allowed */
	x86_pm_init(&pm, NULL, NULL, NULL, NULL);
	v = 0xfe;
	x86_pm_pio(&pm, X86_I8042_CMD_PORT, &v, 1, true);
	v = X86_PVPANIC_PANICKED;
	x86_pm_pio(&pm, X86_PVPANIC_PORT, &v, 1, true);
}
END_TEST

/* The reset-vector stub: real-mode "mov al, 1; mov dx, 0x602; out dx, al"
 * then hlt forever, padded with hlt, 16 bytes (it must fit below 1 MiB). */
START_TEST(test_reset_stub)
{
	uint8_t b[X86_RESET_STUB_LEN];

	ck_assert_uint_eq(X86_RESET_VECTOR + X86_RESET_STUB_LEN, X86_BIOS_END);
	ck_assert_uint_le(X86_ACPI_BASE + X86_ACPI_SIZE, X86_RESET_VECTOR);
	x86_reset_stub(b);
	ck_assert_uint_eq(b[0], 0xb0);
	ck_assert_uint_eq(b[1], X86_PM_RESET_VALUE);
	ck_assert_uint_eq(b[2], 0xba);
	ck_assert_uint_eq(b[3] | (unsigned int)b[4] << 8, X86_PM_RESET_PORT);
	ck_assert_uint_eq(b[5], 0xee);
	ck_assert_uint_eq(b[6], 0xf4);
	ck_assert_uint_eq(b[7], 0xeb);
	ck_assert_int_eq(9 + (int8_t)b[8], 6); /* jmp (next IP 9) back to hlt */
	for (unsigned int i = 9; i < X86_RESET_STUB_LEN; i++)
		ck_assert_uint_eq(b[i], 0xf4);
}
END_TEST

START_TEST(test_dispatch)
{
	struct x86_pm pm;
	struct x86_pio io = { .com1 = &u, .pm = &pm };
	uint8_t d[4];
	char buf[4];

	poweroffs = resets = 0;
	x86_pm_init(&pm, on_poweroff, on_reset, on_panic, NULL);
	d[0] = 'D';
	ck_assert(x86_pio_dispatch(&io, 0x3f8, d, 1, true));
	ck_assert_int_eq(read(pipefd[0], buf, 1), 1);
	ck_assert_int_eq(buf[0], 'D');
	ck_assert(x86_pio_dispatch(&io, 0x3fd, d, 1, false));
	ck_assert_uint_eq(d[0], 0x60);
	/* COM2 and unknown ports: absent, reads float high */
	memset(d, 0, sizeof(d));
	ck_assert(!x86_pio_dispatch(&io, 0x2f8, d, 4, false));
	ck_assert_uint_eq(d[0] & d[1] & d[2] & d[3], 0xff);
	ck_assert(!x86_pio_dispatch(&io, 0xcf8, d, 4, true));
	d[0] = 0xfe;
	ck_assert(x86_pio_dispatch(&io, 0x64, d, 1, true));
	ck_assert_int_eq(resets, 1);
	io.com1 = NULL;
	ck_assert(!x86_pio_dispatch(&io, 0x3fd, d, 1, false));
	ck_assert_uint_eq(d[0], 0xff);
}
END_TEST

/* ---- serial_log: [console] serial_max_size / serial_max_files ---------- */

static char logdir[64];

static char *slurp(const char *name, size_t *len)
{
	char path[160];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", logdir, name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* Guest writes of `n` bytes of a known sequence through THR. */
static void guest_writes(struct uart8250 *uu, size_t from, size_t n)
{
	for (size_t i = from; i < from + n; i++)
		wr(uu, THR, (uint8_t)('a' + (i * 7 + i / 26) % 26));
}

static char seq(size_t i)
{
	return (char)('a' + (i * 7 + i / 26) % 26);
}

static void rotation_run(unsigned int files, size_t pre, size_t total)
{
	char path[160], err[256];
	struct serial_log *l;
	struct uart8250 uu;
	size_t kept = 0;

	snprintf(logdir, sizeof(logdir), "/tmp/smvmm-serial-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(logdir));
	snprintf(path, sizeof(path), "%s/com1.log", logdir);
	if (pre) { /* an earlier run's output counts towards the limit */
		FILE *f = fopen(path, "w");

		for (size_t i = 0; i < pre; i++)
			fputc('#', f);
		fclose(f);
	}
	ck_assert_int_eq(serial_log_open(&l, path, 4096, files, err,
					 sizeof(err)), 0);
	ck_assert_uint_eq(serial_log_size(l), pre);
	ck_assert_int_eq(uart8250_init(&uu, serial_log_fd(l), NULL, NULL), 0);
	uart8250_set_rotation(&uu, 4096, serial_log_size(l),
			      serial_log_rotate, l);
	guest_writes(&uu, 0, total);
	ck_assert_uint_eq(uu.tx_bytes, total);
	ck_assert_uint_eq(uu.tx_errors, 0);

	/* Newest last: com1.log.(files-1) .. com1.log.1, com1.log; each at
	 * most 4096 bytes; together the tail of what the guest wrote. */
	{
		char *all = calloc(1, (size_t)files * 4096 + 1);
		size_t len;

		for (unsigned int i = files; i-- > 0;) {
			char name[32];
			char *b;

			if (i)
				snprintf(name, sizeof(name), "com1.log.%u", i);
			else
				snprintf(name, sizeof(name), "com1.log");
			b = slurp(name, &len);
			if (!b)
				continue;
			ck_assert_msg(len <= 4096, "%s: %zu bytes", name, len);
			memcpy(all + kept, b, len);
			kept += len;
			free(b);
		}
		ck_assert_msg(kept > 0 && kept <= total, "kept %zu", kept);
		if (files > 1)
			ck_assert_uint_ge(kept,
					  total < (size_t)(files - 1) * 4096
						  ? total
						  : (size_t)(files - 1) * 4096);
		for (size_t i = 0; i < kept; i++)
			ck_assert_msg(all[i] == seq(total - kept + i),
				      "byte %zu of the kept tail", i);
		free(all);
	}
	{
		char name[32];
		size_t len;

		snprintf(name, sizeof(name), "com1.log.%u", files);
		ck_assert_ptr_null(slurp(name, &len));
	}
	uart8250_destroy(&uu);
	serial_log_close(l);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", logdir);
		ck_assert_int_eq(system(cmd), 0);
	}
}

START_TEST(test_serial_rotation)
{
	rotation_run(3, 0, 20000);    /* log, log.1, log.2 */
	rotation_run(1, 0, 10000);    /* emptied and restarted */
	rotation_run(2, 4000, 5000);  /* the existing 4000 bytes count */
	rotation_run(4, 0, 3000);     /* below the limit: one file */
}
END_TEST

START_TEST(test_serial_log_refuses)
{
	char err[256];
	struct serial_log *l;
	int fds[2];

	/* A FIFO nobody reads: an error, never a hang in open(). */
	snprintf(logdir, sizeof(logdir), "/tmp/smvmm-serial-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(logdir));
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/fifo", logdir);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
		ck_assert_int_eq(serial_log_open(&l, path, 0, 1, err,
						 sizeof(err)), -ENXIO);
		ck_assert_ptr_nonnull(strstr(err, "fifo"));
		unlink(path);
	}
	rmdir(logdir);
	/* Rotation needs a regular file. */
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(serial_log_open(&l, "/dev/null", 1 << 20, 2, err,
					 sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	ck_assert_int_eq(serial_log_open(&l, "/nonexistent-dir/x", 0, 1, err,
					 sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir"));
	close(fds[0]);
	close(fds[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("serial");
	TCase *tc = tcase_create("uart8250");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reset_state);
	tcase_add_test(tc, test_reset_stub);
	tcase_add_test(tc, test_output);
	tcase_add_test(tc, test_dlab_scratch);
	tcase_add_test(tc, test_fifo_iir_bits);
	tcase_add_test(tc, test_thre_interrupt);
	tcase_add_test(tc, test_rx_interrupt_and_fifo);
	tcase_add_test(tc, test_rx_full_and_overrun);
	tcase_add_test(tc, test_loopback);
	tcase_add_test(tc, test_wide_and_out_of_range);
	tcase_add_test(tc, test_no_output_fd);
	tcase_add_test(tc, test_output_backpressure);
	tcase_add_test(tc, test_output_close_unblocks);
	tcase_add_test(tc, test_output_epipe);
	tcase_add_test(tc, test_concurrent_input);
	tcase_add_test(tc, test_pm);
	tcase_add_test(tc, test_dispatch);
	suite_add_tcase(s, tc);
	tc = tcase_create("serial_log");
	tcase_add_test(tc, test_serial_rotation);
	tcase_add_test(tc, test_serial_log_refuses);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
