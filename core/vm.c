/* SPDX-License-Identifier: MIT */
/*
 * vm.c: one VM from one machine description.  The order of things:
 *
 *   vm_new    plan layout (MMIO bases, IRQ lines), load the backend and device
 *             plugins, create the devices (this validates their keys) -- no
 *             hypervisor yet, so `smvmm --check` and `--dump-acpi` work
 *             anywhere;
 *   vm_start  hypervisor VM + guest RAM, kernel + boot_params, ACPI tables,
 *             irqfd/ioeventfd per device, I/O thread, vCPU threads;
 *   vm_finish stop everything and turn the stop reason into an exit status.
 */
#define _GNU_SOURCE
#include "vm.h"
#include "serial_log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "arch/x86_64/x86.h"
#include "device.h"
#include "evloop.h"
#include "gmem.h"
#include "irq.h"
#include "loader.h"
#include "mmio_bus.h"
#include "sandbox.h"
#include "virtio_mmio.h"

#define COM1_IRQ 4

struct vm_device {
	struct machine_device *cfg;
	struct smvmm_plugin plugin;
	struct smvmm_host host;
	struct vmmio transport;
	bool created;
	uint64_t base;
	uint32_t irq;
	int irqfd;                       /* eventfd raising `irq`, or -1 */
	int kickfd[SMVMM_MAX_QUEUES];    /* ioeventfd per queue, or -1 */
	struct vm *vm;
};

struct vm_kick {
	struct vm_device *d;
	uint16_t q;
};

struct vm {
	struct smvmm_machine *m;
	struct smvmm_plugin backend;
	void *bvm;                  /* backend VM, NULL until vm_start */
	struct smvmm_backend_host bhost;

	struct gmem mem;
	struct mmio_bus bus;
	struct irq_plan irqs;
	struct evloop loop;
	bool loop_inited, loop_started;

	struct uart8250 uart;
	struct serial_log *serial_log; /* vm_set_serial_log, or NULL */
	struct x86_pm pm;
	struct x86_pio pio;     /* routes port I/O to uart and pm */
	bool uart_inited;

	struct vm_device dev[MACHINE_MAX_DEVICES];
	unsigned int ndev;
	struct vm_kick kicks[MACHINE_MAX_DEVICES * SMVMM_MAX_QUEUES];
	unsigned int nkicks;

	/* why we stopped; first writer wins */
	pthread_mutex_t stop_lock;
	bool stopping;
	int stop_status;
	char *stop_msg;
	int stop_efd;

	atomic_uint unhandled_logged;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- stop handling --------------------------------------------------- */

static void vm_set_stopped(struct vm *vm, int status, const char *msg)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->stop_lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->stop_status = status;
		vm->stop_msg = msg ? strdup(msg) : NULL;
		/* Wakes the main thread's poll(); a full counter cannot happen
		 * since we write once. */
		if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
			/* nothing more we can do; vm_finish still works */
		}
	}
	pthread_mutex_unlock(&vm->stop_lock);
}

void vm_request_stop(struct vm *vm, int status, const char *why)
{
	vm_set_stopped(vm, status, why);
}

int vm_stop_fd(const struct vm *vm)
{
	return vm->stop_efd;
}

/* ---- backend callbacks (vCPU threads) ------------------------------- */

static void vm_log_unhandled(struct vm *vm, const char *what, uint64_t addr,
			     uint32_t len, bool is_write)
{
	/* A guest can hammer unassigned addresses: say so a few times only. */
	unsigned int n = atomic_fetch_add(&vm->unhandled_logged, 1);

	if (n < 8)
		fprintf(stderr,
			"smvmm: guest %s %s of %u bytes at 0x%" PRIx64
			" (no device there)%s\n",
			what, is_write ? "write" : "read", len, addr,
			n == 7 ? "; not logging further ones" : "");
}

static void vm_mmio(void *opaque, uint32_t vcpu, uint64_t gpa, uint8_t *data,
		    uint32_t len, bool is_write)
{
	struct vm *vm = opaque;

	(void)vcpu;
	if (!mmio_bus_access(&vm->bus, gpa, data, len, is_write))
		vm_log_unhandled(vm, "MMIO", gpa, len, is_write);
}

static void vm_pio(void *opaque, uint32_t vcpu, uint16_t port, uint8_t *data,
		   uint32_t len, bool is_write)
{
	struct vm *vm = opaque;

	(void)vcpu;
	/*
	 * Ports nobody serves read 0xff: Linux probes legacy ports (PIC, PIT,
	 * CMOS, VGA) even on a microVM, so they are not worth a log line.
	 */
	x86_pio_dispatch(&vm->pio, port, data, len, is_write);
}

static void vm_backend_stopped(void *opaque, uint32_t vcpu,
			       enum smvmm_stop_reason reason,
			       const char *message)
{
	struct vm *vm = opaque;
	char buf[4096];
	int status;

	switch (reason) {
	case SMVMM_STOP_POWEROFF:
	case SMVMM_STOP_RESET:
	case SMVMM_STOP_HOST:
		status = VM_EXIT_OK;
		break;
	case SMVMM_STOP_SHUTDOWN:
	case SMVMM_STOP_INTERNAL:
		status = VM_EXIT_GUEST_CRASH;
		break;
	default:
		status = VM_EXIT_ERROR;
		break;
	}
	snprintf(buf, sizeof(buf), "vCPU %u: %s", vcpu,
		 message ? message : "stopped");
	vm_set_stopped(vm, status, buf);
}

static void vm_poweroff(void *opaque)
{
	vm_set_stopped(opaque, VM_EXIT_OK, "guest powered off (ACPI S5)");
}

static void vm_reset(void *opaque)
{
	/* As QEMU with -no-reboot and Firecracker: a reset ends the VMM. */
	vm_set_stopped(opaque, VM_EXIT_OK, "guest requested a reset");
}

static void vm_panic(void *opaque)
{
	/* A panic must never look like a clean stop: exit 2, as a crash. */
	vm_set_stopped(opaque, VM_EXIT_GUEST_CRASH,
		       "guest kernel panicked (pvpanic event)");
}

/* ---- interrupts and notifications ----------------------------------- */

static void vm_raise_irq(void *opaque)
{
	struct vm_device *d = opaque;
	uint64_t one = 1;

	if (d->irqfd >= 0) {
		/* Edge-triggered line (_CRS says Edge): one eventfd write is
		 * one edge; EAGAIN means an edge is already pending. */
		if (write(d->irqfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			device_log(&d->host, SMVMM_LOG_WARN,
				   "irqfd write: %s", strerror(errno));
		return;
	}
	if (d->vm->bvm) {
		const struct smvmm_backend_ops *ops = &d->vm->backend.backend_ops;

		ops->set_irq_line(d->vm->bvm, d->irq, 1);
		ops->set_irq_line(d->vm->bvm, d->irq, 0);
	}
}

static void vm_uart_irq(void *opaque, int level)
{
	struct vm *vm = opaque;

	if (vm->bvm)
		vm->backend.backend_ops.set_irq_line(vm->bvm, COM1_IRQ, level);
}

static void vm_kick_cb(void *opaque, int fd, uint32_t events)
{
	struct vm_kick *k = opaque;
	uint64_t v;

	(void)events;
	/* Drain the counter: several kicks in a row are one notification. */
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	vmmio_queue_notify(&k->d->transport, k->q);
}

/* ---- planning -------------------------------------------------------- */

static int vm_plan_devices(struct vm *vm, char *err, size_t errlen)
{
	struct smvmm_machine *m = vm->m;
	uint64_t next = X86_VIRTIO_MMIO_BASE;
	const char *holder;
	int rc;

	irq_plan_init(&vm->irqs);
	rc = irq_plan_claim(&vm->irqs, COM1_IRQ, "COM1", &holder);
	if (rc)
		return rc;

	/* Fixed placements first, so automatic ones go around them. */
	for (unsigned int i = 0; i < m->ndev; i++) {
		struct machine_device *md = &m->dev[i];
		struct vm_device *d = &vm->dev[i];

		d->cfg = md;
		d->vm = vm;
		if (md->irq >= 0) {
			rc = irq_plan_claim(&vm->irqs, (uint32_t)md->irq, md->id,
					    &holder);
			if (rc) {
				set_err(err, errlen,
					"%s:%d: [device.%s] irq: line %d %s%s",
					m->path, md->irq_line, md->id, md->irq,
					rc == -EBUSY ? "is already used by " :
						       "is out of range",
					rc == -EBUSY ? holder : "");
				return rc;
			}
			d->irq = (uint32_t)md->irq;
		}
		if (md->mmio_base) {
			d->base = md->mmio_base;
			rc = mmio_bus_add(&vm->bus, d->base, VIRTIO_MMIO_SIZE,
					  vmmio_access, &d->transport, md->id,
					  &holder);
			if (rc) {
				set_err(err, errlen,
					"%s:%d: [device.%s] mmio_base: 0x%" PRIx64
					" overlaps %s",
					m->path, md->mmio_base_line, md->id,
					d->base, rc == -EBUSY ? holder : "?");
				return rc;
			}
		}
	}
	for (unsigned int i = 0; i < m->ndev; i++) {
		struct machine_device *md = &m->dev[i];
		struct vm_device *d = &vm->dev[i];

		if (md->irq < 0) {
			rc = irq_plan_alloc(&vm->irqs, md->id);
			if (rc < 0) {
				set_err(err, errlen,
					"%s:%d: [device.%s]: no free interrupt line "
					"(%d lines in use)",
					m->path, md->line, md->id,
					IRQ_PLAN_LINES);
				return rc;
			}
			d->irq = (uint32_t)rc;
		}
		if (!md->mmio_base) {
			for (;;) {
				if (next + VIRTIO_MMIO_SIZE >
				    X86_VIRTIO_MMIO_END) {
					set_err(err, errlen,
						"%s:%d: [device.%s]: virtio-mmio "
						"window full",
						m->path, md->line, md->id);
					return -ENOSPC;
				}
				rc = mmio_bus_add(&vm->bus, next,
						  VIRTIO_MMIO_SIZE, vmmio_access,
						  &d->transport, md->id, NULL);
				if (rc == 0)
					break;
				next += X86_VIRTIO_MMIO_STRIDE;
			}
			d->base = next;
			next += X86_VIRTIO_MMIO_STRIDE;
		}
	}
	return 0;
}

static int vm_load_devices(struct vm *vm, char *err, size_t errlen)
{
	struct smvmm_machine *m = vm->m;
	struct loader_search s = {.plugin_dir = m->plugin_dir};
	int rc;

	for (unsigned int i = 0; i < m->ndev; i++) {
		struct machine_device *md = &m->dev[i];
		struct vm_device *d = &vm->dev[i];
		char lerr[512];

		rc = loader_load(md->type, SMVMM_PLUGIN_DEVICE, &s, &d->plugin,
				 lerr, sizeof(lerr));
		if (rc) {
			set_err(err, errlen, "%s:%d: [device.%s] type: %s",
				m->path, md->type_line, md->id, lerr);
			return rc;
		}
		rc = machine_check_device_keys(m, md,
					       d->plugin.desc.config_keys, err,
					       errlen);
		if (rc)
			return rc;
		device_host_init(&d->host, md->id, m->path, md->line, md->kv,
				 md->nkv, &vm->mem, &vm->loop);
		d->host.check_only = m->check_only;
		rc = device_create(&d->host, &d->plugin.dev_ops, lerr,
				   sizeof(lerr));
		if (rc) {
			/* lerr is "file:line: [device.id] key: ..." for a
			 * config error, else it names the device. */
			set_err(err, errlen, "%s%s%s", lerr[0] == '[' ? m->path : "",
				lerr[0] == '[' ? ": " : "", lerr);
			return rc;
		}
		d->created = true;
		vmmio_init(&d->transport, &d->host, vm_raise_irq, d, NULL, NULL);
	}
	vm->ndev = m->ndev;
	return 0;
}

static void vm_platform(const struct vm *vm, struct x86_platform *p,
			struct x86_virtio_dev *devs)
{
	for (unsigned int i = 0; i < vm->ndev; i++) {
		devs[i].id = vm->dev[i].cfg->id;
		devs[i].base = vm->dev[i].base;
		devs[i].size = VIRTIO_MMIO_SIZE;
		devs[i].irq = vm->dev[i].irq;
	}
	memset(p, 0, sizeof(*p));
	p->vcpus = vm->m->vcpus;
	p->dev = devs;
	p->ndev = vm->ndev;
	p->mem_size = vm->m->mem_size;
}

int vm_new(struct smvmm_machine *m, struct vm **out, char *err, size_t errlen)
{
	struct loader_search s = {.plugin_dir = m->plugin_dir};
	struct vm *vm;
	char lerr[512];
	int rc;

	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	vm->m = m;
	vm->stop_efd = -1;
	for (unsigned int i = 0; i < MACHINE_MAX_DEVICES; i++) {
		vm->dev[i].irqfd = -1;
		for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++)
			vm->dev[i].kickfd[q] = -1;
	}
	pthread_mutex_init(&vm->stop_lock, NULL);
	gmem_init(&vm->mem);
	mmio_bus_init(&vm->bus);
	rc = evloop_init(&vm->loop);
	if (rc) {
		set_err(err, errlen, "event loop: %s", strerror(-rc));
		goto err_vm;
	}
	vm->loop_inited = true;
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		rc = -errno;
		set_err(err, errlen, "eventfd: %s", strerror(errno));
		goto err_vm;
	}
	rc = loader_load(m->backend, SMVMM_PLUGIN_BACKEND, &s, &vm->backend,
			 lerr, sizeof(lerr));
	if (rc) {
		if (m->backend_line)
			set_err(err, errlen, "%s:%d: [machine] backend: %s",
				m->path, m->backend_line, lerr);
		else
			set_err(err, errlen,
				"%s: [machine] backend (default %s): %s",
				m->path, m->backend, lerr);
		goto err_vm;
	}
	rc = vm_plan_devices(vm, err, errlen);
	if (rc)
		goto err_vm;
	rc = vm_load_devices(vm, err, errlen);
	if (rc)
		goto err_vm;
	*out = vm;
	return 0;

err_vm:
	vm_free(vm);
	return rc;
}

void vm_print_plan(const struct vm *vm, FILE *f)
{
	const struct smvmm_machine *m = vm->m;
	uint64_t low = m->mem_size < X86_RAM_LOW_MAX ? m->mem_size :
						      X86_RAM_LOW_MAX;

	fprintf(f, "machine: %s\n", m->path);
	fprintf(f, "  vcpus:   %u\n", m->vcpus);
	fprintf(f, "  memory:  %" PRIu64 " MiB\n", m->mem_size >> 20);
	fprintf(f, "  backend: %s (%s %s)\n", m->backend, vm->backend.path,
		vm->backend.desc.version ? vm->backend.desc.version : "");
	fprintf(f, "  kernel:  %s\n", m->kernel);
	if (m->initrd)
		fprintf(f, "  initrd:  %s\n", m->initrd);
	fprintf(f, "  cmdline: %s\n", m->cmdline ? m->cmdline : "");
	fprintf(f, "memory map (guest-physical):\n");
	fprintf(f, "  0x%016" PRIx64 "-0x%016" PRIx64 " RAM\n", (uint64_t)0,
		low - 1);
	if (m->mem_size > X86_RAM_LOW_MAX)
		fprintf(f, "  0x%016" PRIx64 "-0x%016" PRIx64 " RAM\n",
			X86_RAM_HIGH_BASE,
			X86_RAM_HIGH_BASE + (m->mem_size - X86_RAM_LOW_MAX) - 1);
	for (unsigned int i = 0; i < vm->ndev; i++) {
		const struct vm_device *d = &vm->dev[i];

		fprintf(f,
			"  0x%016" PRIx64 "-0x%016" PRIx64
			" virtio-mmio %-12s irq %2u  %s (device id %u, %u queues) %s\n",
			d->base, d->base + VIRTIO_MMIO_SIZE - 1, d->cfg->id,
			d->irq, d->cfg->type, d->host.info.device_id,
			d->host.info.num_queues, d->plugin.path);
	}
	fprintf(f, "  0x%016" PRIx64 "-0x%016" PRIx64 " IOAPIC (GSI 0-23)\n",
		(uint64_t)X86_IOAPIC_BASE, (uint64_t)X86_IOAPIC_BASE + 0xfff);
	fprintf(f, "  0x%016" PRIx64 "-0x%016" PRIx64 " local APICs\n",
		(uint64_t)X86_LAPIC_BASE, (uint64_t)X86_LAPIC_BASE + 0xfff);
	fprintf(f, "I/O ports:\n");
	fprintf(f, "  0x%04x-0x%04x COM1 (8250 UART) irq %d\n", X86_COM1_PORT,
		X86_COM1_PORT + 7, COM1_IRQ);
	x86_pm_describe(f);
	sandbox_describe(m, f);
}

int vm_dump_acpi(const struct vm *vm, const char *dir, char *err,
		 size_t errlen)
{
	struct x86_virtio_dev devs[MACHINE_MAX_DEVICES];
	struct x86_platform p;

	vm_platform(vm, &p, devs);
	return x86_acpi_dump(&p, dir, err, errlen);
}

/* ---- start ----------------------------------------------------------- */

static int vm_wire_device(struct vm *vm, struct vm_device *d, char *err,
			  size_t errlen)
{
	const struct smvmm_backend_ops *ops = &vm->backend.backend_ops;
	int rc;

	if (ops->irqfd) {
		d->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (d->irqfd < 0) {
			set_err(err, errlen, "[device.%s]: eventfd: %s",
				d->cfg->id, strerror(errno));
			return -errno;
		}
		rc = ops->irqfd(vm->bvm, d->irqfd, d->irq, -1, false);
		if (rc) {
			/* Fall back to KVM_IRQ_LINE pulses. */
			close(d->irqfd);
			d->irqfd = -1;
		}
	}
	if (!ops->ioeventfd)
		return 0;
	/*
	 * One ioeventfd per queue, matched on the queue index written to
	 * QueueNotify (VIRTIO 1.2 §4.2.2), assigned for the VM's lifetime: the
	 * transport ignores kicks for queues that are not live, so nothing
	 * needs to be torn down on a device reset.
	 */
	for (uint16_t q = 0; q < d->host.nr_queues; q++) {
		struct vm_kick *k = &vm->kicks[vm->nkicks];
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0) {
			set_err(err, errlen, "[device.%s]: eventfd: %s",
				d->cfg->id, strerror(errno));
			return -errno;
		}
		rc = ops->ioeventfd(vm->bvm, d->base + VIRTIO_MMIO_QUEUE_NOTIFY,
				    4, q, fd, false);
		if (rc) {
			/* Kicks then arrive as MMIO exits: still correct. */
			close(fd);
			return 0;
		}
		d->kickfd[q] = fd;
		k->d = d;
		k->q = q;
		rc = evloop_watch(&vm->loop, fd, SMVMM_FD_IN, vm_kick_cb, k, d);
		if (rc) {
			set_err(err, errlen, "[device.%s]: event loop: %s",
				d->cfg->id, strerror(-rc));
			return rc;
		}
		vm->nkicks++;
	}
	return 0;
}

void vm_set_serial_log(struct vm *vm, struct serial_log *log)
{
	vm->serial_log = log;
}

int vm_start(struct vm *vm, int serial_fd, char *err, size_t errlen)
{
	const struct smvmm_backend_ops *ops = &vm->backend.backend_ops;
	struct smvmm_machine *m = vm->m;
	struct x86_virtio_dev devs[MACHINE_MAX_DEVICES];
	struct smvmm_vm_config cfg = {
		.struct_size = sizeof(cfg),
		.vcpus = m->vcpus,
		.mem_size = m->mem_size,
	};
	struct x86_platform p;
	struct x86_acpi_blob acpi;
	struct x86_boot_cfg boot;
	struct smvmm_x86_regs regs;
	uint64_t rsdp;
	char *bmsg = NULL;
	int rc;

	vm->bhost = (struct smvmm_backend_host){
		.struct_size = sizeof(vm->bhost),
		.opaque = vm,
		.mmio = vm_mmio,
		.pio = vm_pio,
		.vm_stopped = vm_backend_stopped,
	};
	rc = uart8250_init(&vm->uart, serial_fd, vm_uart_irq, vm);
	if (rc) {
		set_err(err, errlen, "COM1: %s", strerror(-rc));
		return rc;
	}
	vm->uart_inited = true;
	if (vm->serial_log && serial_log_max_size(vm->serial_log))
		uart8250_set_rotation(&vm->uart,
				      serial_log_max_size(vm->serial_log),
				      serial_log_size(vm->serial_log),
				      serial_log_rotate, vm->serial_log);
	x86_pm_init(&vm->pm, vm_poweroff, vm_reset, vm_panic, vm);
	vm->pio.com1 = &vm->uart;
	vm->pio.pm = &vm->pm;

	rc = x86_memory_layout(&vm->mem, m->mem_size);
	if (rc) {
		set_err(err, errlen, "guest memory (%" PRIu64 " MiB): %s",
			m->mem_size >> 20, strerror(-rc));
		return rc;
	}
	rc = ops->create_vm(&vm->bhost, &cfg, &vm->bvm, &bmsg);
	if (rc) {
		set_err(err, errlen, "backend %s: %s", m->backend,
			bmsg ? bmsg : strerror(-rc));
		free(bmsg);
		vm->bvm = NULL;
		return rc;
	}
	free(bmsg);
	for (unsigned int i = 0; i < vm->mem.nr; i++) {
		const struct gmem_region *r = &vm->mem.r[i];

		rc = ops->add_memory(vm->bvm, i, r->gpa, r->size, r->hva, r->fd,
				     r->fd_offset);
		if (rc) {
			set_err(err, errlen, "backend %s: add memory: %s",
				m->backend, strerror(-rc));
			return rc;
		}
	}

	vm_platform(vm, &p, devs);
	rc = x86_acpi_build(&p, &acpi);
	if (rc) {
		set_err(err, errlen, "ACPI tables: %s", strerror(-rc));
		return rc;
	}
	rc = x86_acpi_install(&vm->mem, &acpi, &rsdp);
	x86_acpi_free(&acpi);
	if (rc) {
		set_err(err, errlen, "ACPI tables: %s", strerror(-rc));
		return rc;
	}
	{
		uint8_t stub[X86_RESET_STUB_LEN];

		x86_reset_stub(stub);
		rc = gmem_write(&vm->mem, X86_RESET_VECTOR, stub, sizeof(stub));
		if (rc) {
			set_err(err, errlen, "reset vector: %s", strerror(-rc));
			return rc;
		}
	}

	memset(&boot, 0, sizeof(boot));
	boot.kernel = m->kernel;
	boot.initrd = m->initrd;
	boot.cmdline = m->cmdline ? m->cmdline : "";
	boot.protocol = (int)m->protocol;
	boot.rsdp_gpa = rsdp;
	boot.vcpus = m->vcpus;
	boot.mem_size = m->mem_size;
	boot.ram_zeroed = true; /* fresh gmem_add_ram memory; only < 1 MiB written so far */
	rc = x86_boot_load(&vm->mem, &boot, &regs, err, errlen);
	if (rc)
		return rc;
	rc = ops->set_regs(vm->bvm, 0, &regs);
	if (rc) {
		set_err(err, errlen, "backend %s: set vCPU 0 registers: %s",
			m->backend, strerror(-rc));
		return rc;
	}

	for (unsigned int i = 0; i < vm->ndev; i++) {
		rc = vm_wire_device(vm, &vm->dev[i], err, errlen);
		if (rc)
			return rc;
	}
	/*
	 * Set-up done: every file, device and socket the VM needs is open.
	 * Into the jail ([sandbox]: pivot_root, drop to the user) before any
	 * guest code runs; then the guest's threads start.
	 */
	rc = sandbox_enter(m, err, errlen);
	if (rc)
		return rc;
	rc = evloop_start(&vm->loop);
	if (rc) {
		set_err(err, errlen, "I/O thread: %s", strerror(-rc));
		return rc;
	}
	vm->loop_started = true;
	rc = ops->run(vm->bvm);
	if (rc) {
		set_err(err, errlen, "backend %s: start vCPUs: %s", m->backend,
			strerror(-rc));
		return rc;
	}
	return 0;
}

void vm_serial_input(struct vm *vm, const uint8_t *buf, size_t n)
{
	uart8250_input(&vm->uart, buf, n);
}

int vm_finish(struct vm *vm)
{
	int status;

	/* A vCPU waiting for a console nobody reads must not hang stop(). */
	if (vm->uart_inited)
		uart8250_close(&vm->uart);
	if (vm->bvm)
		vm->backend.backend_ops.stop(vm->bvm);
	if (vm->loop_started) {
		evloop_stop(&vm->loop);
		vm->loop_started = false;
	}
	pthread_mutex_lock(&vm->stop_lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->stop_status = VM_EXIT_OK;
	}
	status = vm->stop_status;
	if (vm->stop_msg)
		fprintf(stderr, "smvmm: %s\n", vm->stop_msg);
	pthread_mutex_unlock(&vm->stop_lock);
	return status;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->bvm) {
		vm->backend.backend_ops.stop(vm->bvm);
	}
	if (vm->loop_started)
		evloop_stop(&vm->loop);
	for (unsigned int i = 0; i < MACHINE_MAX_DEVICES; i++) {
		struct vm_device *d = &vm->dev[i];

		/* Kick watches point at the transport: remove them first. */
		for (unsigned int q = 0; q < SMVMM_MAX_QUEUES; q++)
			if (d->kickfd[q] >= 0) {
				if (vm->loop_inited)
					evloop_unwatch(&vm->loop, d->kickfd[q]);
				close(d->kickfd[q]);
				d->kickfd[q] = -1;
			}
		if (d->created) {
			vmmio_destroy(&d->transport);
			device_destroy(&d->host);
			d->created = false;
		}
		if (d->irqfd >= 0) {
			close(d->irqfd);
			d->irqfd = -1;
		}
		if (d->plugin.handle)
			loader_close(&d->plugin);
	}
	if (vm->bvm)
		vm->backend.backend_ops.destroy_vm(vm->bvm);
	vm->bvm = NULL;
	if (vm->backend.handle)
		loader_close(&vm->backend);
	if (vm->loop_inited)
		evloop_destroy(&vm->loop);
	mmio_bus_destroy(&vm->bus);
	gmem_destroy(&vm->mem);
	if (vm->uart_inited)
		uart8250_destroy(&vm->uart);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	free(vm->stop_msg);
	pthread_mutex_destroy(&vm->stop_lock);
	free(vm);
}
