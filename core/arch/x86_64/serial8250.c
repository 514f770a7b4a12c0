// SPDX-License-Identifier: MIT
/*
 * 8250/16550A UART (COM1).  Register set per the National Semiconductor
 * PC16550D datasheet: RBR/THR, IER, IIR/FCR, LCR (DLAB), MCR (loopback),
 * LSR, MSR, SCR, and DLL/DLM behind DLAB.
 *
 * Output is synchronous: a THR write reaches out_fd before the access
 * returns, so the transmitter is always empty (LSR THRE|TEMT) and the THRE
 * interrupt fires right after every write when enabled.  The RX side is a
 * ring deeper than the 16550's 16 bytes so pasted input is not lost; the
 * guest cannot tell (it sees DR until the ring is empty).
 *
 * Unlike a real PC board, OUT2 does not gate the interrupt line (as in QEMU):
 * the line follows "an interrupt is pending" only.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "x86.h"

/* register offsets */
#define UART_RBR 0 /* read, DLAB 0 */
#define UART_THR 0 /* write, DLAB 0 */
#define UART_DLL 0 /* DLAB 1 */
#define UART_IER 1 /* DLAB 0 */
#define UART_DLM 1 /* DLAB 1 */
#define UART_IIR 2 /* read */
#define UART_FCR 2 /* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_ERBFI 0x01 /* received data available */
#define IER_ETBEI 0x02 /* THR empty */
#define IER_ELSI 0x04  /* receiver line status */
#define IER_EDSSI 0x08 /* modem status */

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_FIFO 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
#define MSR_DELTA 0x0f

/* Outside loopback the "modem" is always there: carrier, DSR and CTS. */
#define MSR_IDLE (MSR_DCD | MSR_DSR | MSR_CTS)

static uint8_t uart_iir(const struct uart8250 *u)
{
	uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	/* Priority (PC16550D Table 4): line status, RX data, THRE, modem */
	if ((u->ier & IER_ELSI) && (u->lsr_err & LSR_OE))
		return fifo | IIR_RLSI;
	if ((u->ier & IER_ERBFI) && u->rx_len)
		return fifo | IIR_RDI;
	if ((u->ier & IER_ETBEI) && u->thr_ipending)
		return fifo | IIR_THRI;
	if ((u->ier & IER_EDSSI) && (u->msr & MSR_DELTA))
		return fifo | IIR_MSI;
	return fifo | IIR_NO_INT;
}

/* Lock held. */
static void uart_update_irq(struct uart8250 *u)
{
	int level = !(uart_iir(u) & IIR_NO_INT);

	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->irq_fn)
			u->irq_fn(u->irq_opaque, level);
	}
}

/* MSR status bits follow MCR in loopback (PC16550D "Loopback"). */
static void uart_update_msr(struct uart8250 *u)
{
	uint8_t st, old = u->msr & ~MSR_DELTA, delta = 0;

	if (u->mcr & MCR_LOOP)
		st = ((u->mcr & MCR_RTS) ? MSR_CTS : 0) |
		     ((u->mcr & MCR_DTR) ? MSR_DSR : 0) |
		     ((u->mcr & MCR_OUT1) ? MSR_RI : 0) |
		     ((u->mcr & MCR_OUT2) ? MSR_DCD : 0);
	else
		st = MSR_IDLE;
	if ((st ^ old) & MSR_CTS)
		delta |= MSR_DCTS;
	if ((st ^ old) & MSR_DSR)
		delta |= MSR_DDSR;
	if ((old & MSR_RI) && !(st & MSR_RI)) /* trailing edge */
		delta |= MSR_TERI;
	if ((st ^ old) & MSR_DCD)
		delta |= MSR_DDCD;
	u->msr = st | (u->msr & MSR_DELTA) | delta;
}

static void uart_reset(struct uart8250 *u)
{
	u->ier = 0;
	u->fcr = 0;
	u->lcr = 0;
	u->mcr = 0;
	u->lsr_err = 0;
	u->msr = MSR_IDLE;
	u->scr = 0;
	u->dll = 0x0c; /* 9600 baud from the 1.8432 MHz clock */
	u->dlm = 0;
	u->thr_ipending = false;
	u->rx_head = 0;
	u->rx_len = 0;
	u->irq_level = 0;
}

int uart8250_init(struct uart8250 *u, int out_fd, uart8250_irq_fn irq_fn,
		  void *irq_opaque)
{
	int ret;

	memset(u, 0, sizeof(*u));
	ret = pthread_mutex_init(&u->lock, NULL);
	if (ret)
		return -ret;
	u->out_fd = out_fd;
	u->irq_fn = irq_fn;
	u->irq_opaque = irq_opaque;
	uart_reset(u);
	return 0;
}

void uart8250_destroy(struct uart8250 *u)
{
	pthread_mutex_destroy(&u->lock);
}

void uart8250_set_rotation(struct uart8250 *u, uint64_t max_bytes,
			   uint64_t size, int (*rotate_fn)(void *opaque),
			   void *opaque)
{
	u->out_max = max_bytes;
	u->out_size = size;
	u->rotate_fn = rotate_fn;
	u->rotate_opaque = opaque;
}

void uart8250_close(struct uart8250 *u)
{
	__atomic_store_n(&u->closing, 1, __ATOMIC_RELEASE);
}

/*
 * Write one byte to out_fd without loss: a full pipe or a stopped terminal
 * holds the guest (as a UART whose line is flow-controlled), EINTR is
 * retried.  The wait is a poll() with a timeout rather than a blocking
 * write(), so that uart8250_close() can end it: the vCPU thread doing it
 * must be able to stop.
 */
static void uart_emit(struct uart8250 *u, uint8_t b)
{
	if (u->out_max && u->out_size >= u->out_max && u->rotate_fn) {
		int fd = u->rotate_fn(u->rotate_opaque);

		u->out_fd = fd;
		u->out_size = 0;
	}
	if (u->out_fd < 0) {
		if (u->out_max)
			u->tx_errors++; /* a file we could not reopen */
		return;
	}
	for (;;) {
		struct pollfd p = { .fd = u->out_fd, .events = POLLOUT };
		int r = poll(&p, 1, 100);
		ssize_t w;

		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0) {
			if (__atomic_load_n(&u->closing, __ATOMIC_ACQUIRE))
				break;
			continue;
		}
		if (!(p.revents & POLLOUT))
			break; /* POLLERR/POLLHUP: the terminal is gone */
		/* One byte to a writable pipe or tty does not block. */
		w = write(u->out_fd, &b, 1);
		if (w == 1) {
			u->tx_bytes++;
			u->out_size++;
			return;
		}
		if (w < 0 && (errno == EINTR || errno == EAGAIN ||
			      errno == EWOULDBLOCK))
			continue;
		break;
	}
	/* EPIPE, EIO, closing: drop, count. */
	u->tx_errors++;
}

static bool rx_push(struct uart8250 *u, uint8_t b)
{
	if (u->rx_len == UART8250_RX_CAP) {
		u->lsr_err |= LSR_OE;
		return false;
	}
	u->rx[(u->rx_head + u->rx_len) % UART8250_RX_CAP] = b;
	u->rx_len++;
	return true;
}

static uint8_t uart_read(struct uart8250 *u, uint16_t off)
{
	uint8_t v;

	switch (off) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB)
			return u->dll;
		if (!u->rx_len)
			return 0;
		v = u->rx[u->rx_head];
		u->rx_head = (u->rx_head + 1) % UART8250_RX_CAP;
		u->rx_len--;
		return v;
	case UART_IER:
		if (u->lcr & LCR_DLAB)
			return u->dlm;
		return u->ier;
	case UART_IIR:
		v = uart_iir(u);
		/* Reading IIR with THRE as the source clears it (PC16550D) */
		if ((v & 0x0f) == IIR_THRI)
			u->thr_ipending = false;
		return v;
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (u->rx_len ? LSR_DR : 0) | u->lsr_err;
		u->lsr_err = 0; /* OE clears on read */
		return v;
	case UART_MSR:
		v = u->msr;
		u->msr &= ~MSR_DELTA;
		return v;
	case UART_SCR:
		return u->scr;
	}
	return 0xff;
}

static void uart_write(struct uart8250 *u, uint16_t off, uint8_t v)
{
	switch (off) {
	case UART_THR:
		if (u->lcr & LCR_DLAB) {
			u->dll = v;
			return;
		}
		if (u->mcr & MCR_LOOP)
			rx_push(u, v); /* loopback: transmitter feeds receiver */
		else
			uart_emit(u, v);
		/* the byte left at once: THR is empty again */
		u->thr_ipending = true;
		return;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
			return;
		}
		/* Enabling ETBEI with THR empty raises THRE immediately. */
		if (!(u->ier & IER_ETBEI) && (v & IER_ETBEI))
			u->thr_ipending = true;
		u->ier = v & 0x0f;
		return;
	case UART_FCR:
		if (v & FCR_CLEAR_RX) {
			u->rx_head = 0;
			u->rx_len = 0;
		}
		u->fcr = v & (FCR_ENABLE | 0xc0); /* enable + trigger level */
		return;
	case UART_LCR:
		u->lcr = v;
		return;
	case UART_MCR:
		u->mcr = v & MCR_MASK;
		uart_update_msr(u);
		return;
	case UART_LSR:
		return; /* factory test only */
	case UART_MSR:
		return;
	case UART_SCR:
		u->scr = v;
		return;
	}
}

void uart8250_pio(void *opaque, uint16_t offset, uint8_t *data, uint32_t len,
		  bool is_write)
{
	struct uart8250 *u = opaque;

	pthread_mutex_lock(&u->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t off = (uint32_t)offset + i;

		if (off > 7) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			uart_write(u, (uint16_t)off, data[i]);
		else
			data[i] = uart_read(u, (uint16_t)off);
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

size_t uart8250_input(struct uart8250 *u, const uint8_t *buf, size_t n)
{
	size_t done = 0;

	pthread_mutex_lock(&u->lock);
	/* In loopback the receiver is disconnected from the outside. */
	if (!(u->mcr & MCR_LOOP)) {
		while (done < n && u->rx_len < UART8250_RX_CAP)
			rx_push(u, buf[done++]);
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return done;
}

size_t uart8250_rx_space(struct uart8250 *u)
{
	size_t n;

	pthread_mutex_lock(&u->lock);
	n = UART8250_RX_CAP - u->rx_len;
	pthread_mutex_unlock(&u->lock);
	return n;
}
