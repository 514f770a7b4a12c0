// SPDX-License-Identifier: MIT
/*
 * Power management ports and port I/O routing.
 *
 * The FADT (acpi.c) is hardware-reduced (ACPI 6.x §4.1), so sleep and reset
 * go through the registers it names instead of PM1 blocks:
 *   0x600 SLEEP_CONTROL_REG (§4.8.3.7): SLP_TYP bits 4:2, SLP_EN bit 5
 *   0x601 SLEEP_STATUS_REG  (§4.8.3.8): WAK_STS bit 7, write 1 to clear
 *   0x602 RESET_REG         (§4.8.3.6): writing RESET_VALUE resets
 * Linux writes SLP_TYP from \_S5 with SLP_EN to power off, and RESET_VALUE
 * (or the i8042 "pulse reset line" command 0xfe to port 0x64) to reboot.
 */
#include <string.h>

#include "x86.h"

#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK 0x07
#define SLP_EN 0x20
#define WAK_STS 0x80
#define I8042_DATA_PORT 0x60
#define PORT_SYS_CTRL_B 0x61 /* NMI status/control, PC speaker */
#define PORT_POST 0x80       /* POST code / I/O delay */
#define I8042_CMD_RESET 0xfe

void x86_pm_init(struct x86_pm *pm, x86_pm_fn poweroff, x86_pm_fn reset,
		 x86_pm_fn panic, void *opaque)
{
	memset(pm, 0, sizeof(*pm));
	pm->poweroff = poweroff;
	pm->reset = reset;
	pm->panic = panic;
	pm->opaque = opaque;
}

static void pm_call(struct x86_pm *pm, x86_pm_fn fn)
{
	if (fn)
		fn(pm->opaque);
}

void x86_pm_pio(void *opaque, uint16_t port, uint8_t *data, uint32_t len,
		bool is_write)
{
	struct x86_pm *pm = opaque;
	uint8_t v;

	if (!len)
		return;
	if (!is_write) {
		/* Registers are 8 bits; wider reads see 0 in the upper bytes. */
		memset(data, 0, len);
		switch (port) {
		case X86_PM_SLEEP_STS_PORT:
			data[0] = pm->sleep_sts;
			break;
		case X86_PM_SLEEP_CTL_PORT:
		case X86_PM_RESET_PORT:
		case I8042_DATA_PORT:
		case PORT_SYS_CTRL_B:
		case PORT_POST:
			break;
		case X86_I8042_CMD_PORT:
			/* status: output buffer empty, input buffer empty, so
			 * reboot code waiting for "ready" does not spin */
			break;
		case X86_PVPANIC_PORT:
			/* The events we act on; Linux writes only these. */
			data[0] = X86_PVPANIC_PANICKED;
			break;
		default:
			memset(data, 0xff, len);
			break;
		}
		return;
	}

	v = data[0];
	switch (port) {
	case X86_PM_SLEEP_CTL_PORT:
		if ((v & SLP_EN) &&
		    ((v >> SLP_TYP_SHIFT) & SLP_TYP_MASK) == X86_PM_S5_SLP_TYP)
			pm_call(pm, pm->poweroff);
		/* other sleep states are not supported: ignored (no wake) */
		break;
	case X86_PM_SLEEP_STS_PORT:
		pm->sleep_sts &= ~(v & WAK_STS);
		break;
	case X86_PM_RESET_PORT:
		if (v == X86_PM_RESET_VALUE)
			pm_call(pm, pm->reset);
		break;
	case X86_I8042_CMD_PORT:
		if (v == I8042_CMD_RESET)
			pm_call(pm, pm->reset);
		break;
	case X86_PVPANIC_PORT:
		/* PVPANIC_CRASH_LOADED (a kdump kernel takes over) is not
		 * offered, so only PANICKED ends the VM. */
		if (v & X86_PVPANIC_PANICKED)
			pm_call(pm, pm->panic);
		break;
	default:
		break; /* 0x60, 0x61, 0x80: harmless */
	}
}

bool x86_pm_handles(uint16_t port)
{
	switch (port) {
	case X86_PM_SLEEP_CTL_PORT:
	case X86_PM_SLEEP_STS_PORT:
	case X86_PM_RESET_PORT:
	case I8042_DATA_PORT:
	case PORT_SYS_CTRL_B:
	case X86_I8042_CMD_PORT:
	case PORT_POST:
	case X86_PVPANIC_PORT:
		return true;
	}
	return false;
}

bool x86_pio_dispatch(struct x86_pio *p, uint16_t port, uint8_t *data,
		      uint32_t len, bool is_write)
{
	if (port >= X86_COM1_PORT && port < X86_COM1_PORT + 8 && p->com1) {
		uart8250_pio(p->com1, port - X86_COM1_PORT, data, len, is_write);
		return true;
	}
	if (x86_pm_handles(port) && p->pm) {
		x86_pm_pio(p->pm, port, data, len, is_write);
		return true;
	}
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}

void x86_pm_describe(FILE *f)
{
	fprintf(f, "  0x%04x      ACPI sleep control (SLP_TYP %u + SLP_EN = poweroff)\n",
		X86_PM_SLEEP_CTL_PORT, X86_PM_S5_SLP_TYP);
	fprintf(f, "  0x%04x      ACPI sleep status\n", X86_PM_SLEEP_STS_PORT);
	fprintf(f, "  0x%04x      ACPI reset register (value 0x%02x = reset)\n",
		X86_PM_RESET_PORT, X86_PM_RESET_VALUE);
	fprintf(f, "  0x%04x      i8042 command (0xfe = reset); 0x60, 0x61, 0x80 ignored\n",
		X86_I8042_CMD_PORT);
	fprintf(f, "  0x%04x      pvpanic (QEMU0001; a guest panic stops the VM, exit 2)\n",
		X86_PVPANIC_PORT);
}

void x86_reset_stub(uint8_t out[X86_RESET_STUB_LEN])
{
	static const uint8_t stub[] = {
		0xb0, X86_PM_RESET_VALUE,	/* mov al, RESET_VALUE */
		0xba, X86_PM_RESET_PORT & 0xff, X86_PM_RESET_PORT >> 8,
						/* mov dx, 0x602 */
		0xee,				/* out dx, al */
		0xf4,				/* 1: hlt */
		0xeb, 0xfd,			/* jmp 1b */
	};

	memset(out, 0xf4, X86_RESET_STUB_LEN);	/* hlt padding */
	memcpy(out, stub, sizeof(stub));
}
