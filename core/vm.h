/* SPDX-License-Identifier: MIT */
/*
 * A VM built from a machine description: plans the layout (MMIO bases, IRQs,
 * memory map), loads the backend and device plugins, loads the kernel, writes
 * ACPI tables, wires interrupts and notifications, runs and stops the vCPUs.
 */
#ifndef SMVMM_VM_H
#define SMVMM_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <smvmm/backend.h>

#include "machine.h"

struct vm;

/* Exit statuses of `smvmm` for each way a VM ends. */
#define VM_EXIT_OK 0          /* guest power-off (or reset, as QEMU -no-reboot) */
#define VM_EXIT_ERROR 1       /* start-up failed, backend error */
#define VM_EXIT_GUEST_CRASH 2 /* triple fault, emulation failure */

/*
 * vm_new: plan the machine and load every plugin (backend and devices) and
 * create the devices, without touching the hypervisor.  0 or -errno with a
 * one-line message in err (file:line:key for configuration errors).
 * Main thread.
 */
int vm_new(struct smvmm_machine *m, struct vm **out, char *err, size_t errlen);

/* vm_print_plan: the planned layout (memory map, MMIO bases, IRQs, plugins). */
void vm_print_plan(const struct vm *vm, FILE *f);

/* vm_dump_acpi: write each ACPI table to dir/<SIG>.dat. */
int vm_dump_acpi(const struct vm *vm, const char *dir, char *err,
		 size_t errlen);

/*
 * vm_start: create the hypervisor VM, guest RAM, load the kernel, install ACPI,
 * wire devices and start the I/O thread and vCPUs.  `serial_fd` receives COM1
 * output (-1: discard).  Main thread.
 */
int vm_start(struct vm *vm, int serial_fd, char *err, size_t errlen);

struct serial_log;
/*
 * vm_set_serial_log: COM1 writes to `log`'s file and rotates it at its
 * max_size (serial_log.h); call before vm_start, which then takes its
 * serial_fd from the log.  `log` stays the caller's and must outlive the
 * VM.  Main thread.
 */
void vm_set_serial_log(struct vm *vm, struct serial_log *log);

/* vm_serial_input: bytes from the terminal to COM1.  Any thread. */
void vm_serial_input(struct vm *vm, const uint8_t *buf, size_t n);

/*
 * vm_stop_fd: an eventfd that becomes readable once the VM has stopped (guest
 * power-off, crash, or vm_request_stop).  For poll() in the main thread.
 */
int vm_stop_fd(const struct vm *vm);

/* vm_request_stop: ask the VM to stop (signal, console escape).  Any thread. */
void vm_request_stop(struct vm *vm, int status, const char *why);

/*
 * vm_finish: stop vCPUs and the I/O thread, print why the VM ended, and
 * return the exit status for the process (VM_EXIT_*, or the status given to
 * vm_request_stop).  Main thread.
 */
int vm_finish(struct vm *vm);

/* vm_free: destroy devices, unload plugins, free guest memory. */
void vm_free(struct vm *vm);

#endif
