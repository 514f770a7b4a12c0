/* SPDX-License-Identifier: MIT */
/*
 * smvmm hypervisor backend ABI, major version 1.
 *
 * A backend is a shared object loaded like a device plugin (see plugin.h): it
 * exports `const struct smvmm_plugin_desc smvmm_plugin_v1` with kind
 * SMVMM_PLUGIN_BACKEND and ops pointing at a `struct smvmm_backend_ops`.
 *
 * The backend owns the hypervisor (KVM ioctls today; HVF later): the VM, its
 * memory slots, vCPU threads, the in-kernel interrupt controller, irqfd and
 * ioeventfd.  Architecture code (boot layout, ACPI, page tables) stays in the
 * core: the backend receives ready register state (struct smvmm_x86_regs) and
 * reports exits it cannot handle through the callbacks in smvmm_backend_host.
 *
 * Threads: every op runs on the main thread unless said otherwise.  The
 * backend creates one thread per vCPU; callbacks in smvmm_backend_host are made
 * from those vCPU threads.
 */
#ifndef SMVMM_BACKEND_H
#define SMVMM_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Why the VM stopped (smvmm_backend_host.vm_stopped). */
enum smvmm_stop_reason {
	SMVMM_STOP_POWEROFF = 0,   /* guest powered off (ACPI S5): exit 0 */
	SMVMM_STOP_RESET = 1,      /* guest requested a reset */
	SMVMM_STOP_SHUTDOWN = 2,   /* triple fault (KVM_EXIT_SHUTDOWN) */
	SMVMM_STOP_INTERNAL = 3,   /* emulation failure or other internal error */
	SMVMM_STOP_HOST = 4,       /* the host asked (stop(), signal, escape) */
	SMVMM_STOP_ERROR = 5,      /* backend error (ioctl failed, ...) */
};

/* An x86 segment register, as KVM's struct kvm_segment (SDM Vol. 3 §3.4). */
struct smvmm_x86_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl;
};

/* A descriptor-table register (GDTR/IDTR). */
struct smvmm_x86_dtable {
	uint64_t base;
	uint16_t limit;
};

/*
 * x86_64 register state for one vCPU: what boot code sets and what a snapshot
 * or a crash report needs.  Filled by the core's arch code for boot; filled by
 * the backend for get_regs.
 */
struct smvmm_x86_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
	struct smvmm_x86_segment cs, ds, es, fs, gs, ss, tr, ldt;
	struct smvmm_x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer;
};

/* Callbacks from the backend into the core (the backend's "host"). */
struct smvmm_backend_host {
	uint32_t struct_size;
	void *opaque; /* passed back as the first argument */

	/*
	 * mmio: a guest access to an address that is not RAM.  `data` holds
	 * `len` (1, 2, 4 or 8) little-endian bytes; for reads the core fills
	 * it.  vCPU thread.
	 */
	void (*mmio)(void *opaque, uint32_t vcpu, uint64_t gpa, uint8_t *data,
		     uint32_t len, bool is_write);

	/* pio: a port I/O access (x86 IN/OUT), same shape as mmio. vCPU thread. */
	void (*pio)(void *opaque, uint32_t vcpu, uint16_t port, uint8_t *data,
		    uint32_t len, bool is_write);

	/*
	 * vm_stopped: vCPU `vcpu` ended the VM for `reason`; `message` is a
	 * human-readable description (exit reason, suberror, RIP, instruction
	 * bytes, registers), may be NULL.  Called once per vCPU that stops on
	 * its own; the core then calls stop().  vCPU thread.
	 */
	void (*vm_stopped)(void *opaque, uint32_t vcpu,
			   enum smvmm_stop_reason reason, const char *message);
};

/* VM-wide parameters for create_vm. */
struct smvmm_vm_config {
	uint32_t struct_size;
	uint32_t vcpus;     /* >= 1 */
	uint64_t mem_size;  /* bytes of guest RAM (for sizing, informational) */
};

/* Backend operations.  `vm` is what create_vm stored. */
struct smvmm_backend_ops {
	uint32_t struct_size;

	/* --- required --- */

	/*
	 * create_vm: open the hypervisor, create the VM, the interrupt
	 * controller (x86: IOAPIC with 24 pins + PIC + PIT off), and
	 * cfg->vcpus vCPUs with their CPUID (topology: one package, one thread
	 * per core, APIC id == vCPU index).  Errors: -ENODEV when the
	 * hypervisor is absent, with *err_msg set to a static or malloc'd
	 * string explaining why (the core frees it).
	 */
	int (*create_vm)(const struct smvmm_backend_host *host,
			 const struct smvmm_vm_config *cfg, void **vm,
			 char **err_msg);

	/* destroy_vm: stop vCPU threads if running, close everything. */
	void (*destroy_vm)(void *vm);

	/*
	 * add_memory: map [hva, hva+size) as guest RAM at gpa; fd/fd_offset
	 * identify the backing memfd (-1 if none).  `slot` is unique per
	 * region.  Sizes and addresses are 4 KiB aligned.
	 */
	int (*add_memory)(void *vm, uint32_t slot, uint64_t gpa, uint64_t size,
			  void *hva, int fd, uint64_t fd_offset);

	/*
	 * set_regs / get_regs: the full register state of vCPU `vcpu`.  set_regs
	 * before run() for boot (the BSP is vCPU 0; APs start in wait-for-SIPI
	 * unless given regs).  Main thread, VM not running.
	 */
	int (*set_regs)(void *vm, uint32_t vcpu, const struct smvmm_x86_regs *r);
	int (*get_regs)(void *vm, uint32_t vcpu, struct smvmm_x86_regs *r);

	/*
	 * run: start one thread per vCPU and return 0; vCPUs call back through
	 * the host table.  Main thread.
	 */
	int (*run)(void *vm);

	/*
	 * stop: kick every vCPU out of the guest and join its thread.  Safe to
	 * call more than once and from any thread except a vCPU thread.
	 */
	void (*stop)(void *vm);

	/*
	 * set_irq_line: drive interrupt controller input `gsi` to `level`
	 * (1 asserted).  Any thread.
	 */
	int (*set_irq_line)(void *vm, uint32_t gsi, int level);

	/* --- optional (NULL: not supported; the core falls back) --- */

	/*
	 * irqfd: writes of 1 to eventfd `fd` raise `gsi`.  With resample_fd >= 0
	 * the line is level-triggered and resample_fd is signalled at EOI.
	 * deassign removes it.  Main thread.
	 */
	int (*irqfd)(void *vm, int fd, uint32_t gsi, int resample_fd,
		     bool deassign);

	/*
	 * ioeventfd: a guest write of `len` bytes to MMIO `addr` whose value
	 * equals `datamatch` signals eventfd `fd` instead of exiting to the
	 * core.  deassign removes it.  Main or vCPU thread.
	 */
	int (*ioeventfd)(void *vm, uint64_t addr, uint32_t len,
			 uint64_t datamatch, int fd, bool deassign);

	/*
	 * kick_vcpus: make every running vCPU leave the guest and end its
	 * thread, without a vm_stopped() call (only vCPUs that stopped by
	 * themselves report); used for pause.  The threads are not joined:
	 * call stop() before run() again (run() is -EBUSY until then).  Any
	 * thread.
	 */
	void (*kick_vcpus)(void *vm);

	/* --- optional, appended (ABI minor 0 tables may end before here) --- */

	/*
	 * save_state: serialize the hypervisor-side state of the whole VM --
	 * per vCPU: registers, system registers, FPU/SSE/AVX (xsave), XCRs,
	 * MSRs, LAPIC, MP state, pending events, debug registers; per VM: the
	 * interrupt controllers and the guest clock -- into a malloc()ed
	 * buffer *data of *len bytes that the caller frees.  Guest RAM and
	 * device state are not included.  The format is the backend's own and
	 * versioned; only the same backend reads it back.  Errors: -EBUSY if
	 * the VM is running, -errno from the hypervisor.  Main thread, after
	 * stop().
	 */
	int (*save_state)(void *vm, void **data, size_t *len);

	/*
	 * restore_state: load what save_state produced into a VM created with
	 * the same vCPU count, before run().  `data` is untrusted: a wrong
	 * magic, version, vCPU count, length or count gives -EINVAL and the
	 * VM must then be destroyed (its state is partly written).  Main
	 * thread, VM not running.
	 */
	int (*restore_state)(void *vm, const void *data, size_t len);
};

#ifdef __cplusplus
}
#endif
#endif /* SMVMM_BACKEND_H */
