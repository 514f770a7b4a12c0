/* SPDX-License-Identifier: MIT */
/*
 * Internal interfaces of the KVM backend (smvmm-backend-kvm.so).  Nothing here
 * is exported: the only public symbol of the plugin is smvmm_plugin_v1.
 *
 * Reference: Linux Documentation/virt/kvm/api.rst ("the KVM API doc" below).
 */
#ifndef SMVMM_KVM_INTERNAL_H
#define SMVMM_KVM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "smvmm/backend.h"

/*
 * The signal used to kick a vCPU thread out of KVM_RUN.  vCPU threads keep it
 * blocked except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so a kick sent while the
 * thread is in userspace stays pending and makes the next KVM_RUN return EINTR
 * at once: no lost wake-up between "check the stop flag" and "enter the guest".
 */
#define KVM_KICK_SIGNAL SIGUSR1

/* Where KVM keeps its TSS and EPT identity map: the three pages just below the
 * 4 GiB - 256 KiB BIOS area, as QEMU/Firecracker do (KVM API doc,
 * KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR).  Guest RAM must not be here. */
#define KVM_TSS_ADDR 0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

/* Upper bound on vCPUs: xAPIC ids are 8 bits and 0xff is the broadcast id. */
#define KVM_MAX_VCPUS_SMVMM 254u

struct kvm_vm;

/* A guest RAM region, remembered so the backend can read guest memory when it
 * reports an emulation failure. */
struct kvm_mem_region {
	uint32_t slot;
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct kvm_vcpu {
	struct kvm_vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_live; /* created by run() and not yet joined */
};

struct kvm_vm {
	struct smvmm_backend_host host; /* zero-extended copy of the caller's */
	int kvm_fd;
	int vm_fd;
	size_t run_size; /* KVM_GET_VCPU_MMAP_SIZE */
	uint32_t nvcpus;
	struct kvm_vcpu *vcpus;
	bool has_immediate_exit;
	/* Test knob (env SMVMM_KVM_IGNORE_INSN_BYTES=1): report emulation
	 * failures from guest RAM as on kernels before 5.14, which give no
	 * instruction bytes. */
	bool ignore_insn_bytes;
	int max_slots;

	/* Guest RAM, for reading instruction bytes on a failure. */
	pthread_mutex_t mem_lock;
	struct kvm_mem_region *regions;
	size_t nregions;

	/* Set by stop()/kick_vcpus(), cleared by run(); read by vCPU threads. */
	atomic_bool stopping;
	/* Serializes run() and stop() (stop may come from any thread). */
	pthread_mutex_t run_lock;
	bool running;
	bool clock_set; /* the guest clock was set: at the first run() or by a restore */
	/* Guards vcpus[].thread/thread_live against kicks from any thread. */
	pthread_mutex_t kick_lock;
};

/* kvm_cpu.c: per-vCPU boot state (CPUID, MSRs, FPU, LAPIC LINTs). */

/*
 * kvm_get_supported_cpuid: KVM_GET_SUPPORTED_CPUID into a malloc'd table.
 * Returns 0 and *out, or -errno.  Main thread.
 */
int kvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out);

/*
 * kvm_setup_vcpu_cpu: give vCPU `index` of `nvcpus` its CPUID (from the
 * supported table `sup`, normalized for our topology), boot MSRs, FPU and
 * LAPIC LINT0/LINT1.  On failure returns -errno and stores a malloc'd message
 * in *err_msg (may be NULL on OOM).  Main thread.
 */
int kvm_setup_vcpu_cpu(int kvm_fd, int vcpu_fd, uint32_t index,
		       uint32_t nvcpus, const struct kvm_cpuid2 *sup,
		       char **err_msg);

/*
 * kvm_normalize_cpuid: rewrite `c` (a copy of the supported table with room
 * for `cap` entries) for vCPU `index` of `nvcpus`.  Returns 0, or -ENOSPC if
 * topology leaves do not fit.
 */
int kvm_normalize_cpuid(struct kvm_cpuid2 *c, uint32_t cap, uint32_t index,
			uint32_t nvcpus, bool tsc_deadline);

/* kvm_exit.c: vCPU thread main loop. */
void *kvm_vcpu_thread(void *arg);

/* kvm_regs.c: register conversion. */
int kvm_vcpu_get_regs(struct kvm_vcpu *v, struct smvmm_x86_regs *r);
int kvm_vcpu_set_regs(struct kvm_vcpu *v, const struct smvmm_x86_regs *r);

/*
 * kvm_read_guest_phys: copy `len` bytes of guest RAM at `gpa` into `buf`.
 * Returns the number of bytes copied (stops at the first byte that is not
 * RAM).  Any thread.
 */
size_t kvm_read_guest_phys(struct kvm_vm *vm, uint64_t gpa, void *buf,
			   size_t len);

/* kvm_state.c: snapshot blob (see the format there).  Main thread, VM
 * stopped; return 0 or -errno (-EINVAL for a malformed blob). */
int kvm_save_state(struct kvm_vm *vm, void **data, size_t *len);
int kvm_restore_state(struct kvm_vm *vm, const void *data, size_t len);

/* Format helpers shared by the exit code (kvm_regs.c). */
int kvm_format_regs(struct kvm_vcpu *v, char *buf, size_t size);

/*
 * kvm_set_err: format a malloc'd message into *err_msg (if err_msg is not
 * NULL; the core frees it) and return err, for create_vm's error paths.
 */
int kvm_set_err(char **err_msg, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* SMVMM_KVM_INTERNAL_H */
