// SPDX-License-Identifier: MIT
/*
 * smvmm-backend-kvm.so: the Linux KVM backend (backend.h, ABI v1).
 *
 * One VM per create_vm(): /dev/kvm -> VM fd -> in-kernel irqchip (PIC + IOAPIC
 * + per-vCPU LAPIC, no PIT) -> vCPU fds with their kvm_run pages, CPUID, boot
 * MSRs, FPU and LAPIC LINTs.  run() starts one thread per vCPU
 * (kvm_exit.c); stop() kicks them with KVM_KICK_SIGNAL and joins them, and
 * run() may be called again afterwards to resume (pause = stop + run).
 *
 * This file links only libc and pthread (-Wl,-z,defs): nothing from the core.
 * Reference: Linux Documentation/virt/kvm/api.rst ("KVM API doc").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_internal.h"

#define KVM_API_VERSION_EXPECTED 12

int kvm_set_err(char **err_msg, int err, const char *fmt, ...)
{
	va_list ap;

	if (err_msg) {
		va_start(ap, fmt);
		if (vasprintf(err_msg, fmt, ap) < 0)
			*err_msg = NULL;
		va_end(ap);
	}
	return err;
}

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN; see KVM_KICK_SIGNAL */
}

/*
 * Make sure the kick signal cannot kill the process: its default action is to
 * terminate.  vCPU threads only ever take it inside KVM_RUN, where KVM turns
 * it into an EINTR exit; an application handler, if any, is left alone.
 */
static int install_kick_handler(void)
{
	struct sigaction old, sa;

	if (sigaction(KVM_KICK_SIGNAL, NULL, &old) < 0)
		return -errno;
	if (!(old.sa_flags & SA_SIGINFO) &&
	    (old.sa_handler == SIG_DFL || old.sa_handler == SIG_IGN)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = kick_handler;
		sigemptyset(&sa.sa_mask);
		if (sigaction(KVM_KICK_SIGNAL, &sa, NULL) < 0)
			return -errno;
	}
	return 0;
}

/*
 * The signal mask KVM applies while the vCPU is in the guest: everything
 * blocked but the kick, so process signals go to other threads and only a
 * kick interrupts KVM_RUN (KVM API doc, KVM_SET_SIGNAL_MASK; the kernel
 * sigset is 64 bits).
 */
static int set_vcpu_signal_mask(int vcpu_fd)
{
	/* struct kvm_signal_mask is { __u32 len; __u8 sigset[]; }: the 8 mask
	 * bytes follow len directly, with no padding. */
	uint8_t buf[sizeof(struct kvm_signal_mask) + sizeof(uint64_t)];
	struct kvm_signal_mask *m = (struct kvm_signal_mask *)buf;
	uint64_t bits = ~(1ull << (KVM_KICK_SIGNAL - 1));

	m->len = sizeof(bits);
	memcpy(buf + sizeof(*m), &bits, sizeof(bits));
	if (ioctl(vcpu_fd, KVM_SET_SIGNAL_MASK, m) < 0)
		return -errno;
	return 0;
}

static void free_vm(struct kvm_vm *vm)
{
	if (vm->vcpus) {
		for (uint32_t i = 0; i < vm->nvcpus; i++) {
			struct kvm_vcpu *v = &vm->vcpus[i];

			if (v->run)
				munmap(v->run, vm->run_size);
			if (v->fd >= 0)
				close(v->fd);
		}
		free(vm->vcpus);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->regions);
	pthread_mutex_destroy(&vm->mem_lock);
	pthread_mutex_destroy(&vm->run_lock);
	pthread_mutex_destroy(&vm->kick_lock);
	free(vm);
}

static int open_kvm(struct kvm_vm *vm, char **err_msg)
{
	int api;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = errno;

		if (err == EACCES || err == EPERM)
			return kvm_set_err(err_msg, -ENODEV,
				       "/dev/kvm: %s (is this user in the kvm group?)",
				       strerror(err));
		return kvm_set_err(err_msg, -ENODEV,
			       "/dev/kvm: %s (is the kvm module loaded?)",
			       strerror(err));
	}
	api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION_EXPECTED)
		return kvm_set_err(err_msg, -ENODEV,
			       "/dev/kvm: KVM API version %d, expected %d",
			       api, KVM_API_VERSION_EXPECTED);
	return 0;
}

static int check_caps(struct kvm_vm *vm, char **err_msg)
{
	static const struct {
		int cap;
		const char *name;
	} required[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
		{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
	};

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0)
			return kvm_set_err(err_msg, -ENODEV,
				       "/dev/kvm: missing %s", required[i].name);
	vm->has_immediate_exit =
		ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) > 0;
	vm->max_slots = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
			      KVM_CAP_NR_MEMSLOTS);
	if (vm->max_slots <= 0)
		vm->max_slots = 32; /* KVM API doc: the historical minimum */
	return 0;
}

static uint32_t max_vcpus(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	/* KVM API doc: without MAX_VCPUS, NR_VCPUS; without that, 4. */
	if (n <= 0)
		n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (n <= 0)
		n = 4;
	if ((uint32_t)n > KVM_MAX_VCPUS_SMVMM)
		n = KVM_MAX_VCPUS_SMVMM;
	return (uint32_t)n;
}

static int create_vcpus(struct kvm_vm *vm, char **err_msg)
{
	struct kvm_cpuid2 *sup = NULL;
	int ret, sz;

	sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz < (int)sizeof(struct kvm_run))
		return kvm_set_err(err_msg, sz < 0 ? -errno : -EINVAL,
			       "KVM_GET_VCPU_MMAP_SIZE: %s",
			       sz < 0 ? strerror(errno) : "too small");
	vm->run_size = (size_t)sz;

	ret = kvm_get_supported_cpuid(vm->kvm_fd, &sup);
	if (ret)
		return kvm_set_err(err_msg, ret, "KVM_GET_SUPPORTED_CPUID: %s",
			       strerror(-ret));

	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *v = &vm->vcpus[i];
		void *p;

		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (v->fd < 0) {
			v->fd = -1;
			ret = kvm_set_err(err_msg, -errno,
				      "KVM_CREATE_VCPU %u: %s", i,
				      strerror(errno));
			goto out;
		}
		p = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			 MAP_SHARED, v->fd, 0);
		if (p == MAP_FAILED) {
			ret = kvm_set_err(err_msg, -errno,
				      "vCPU %u: mmap kvm_run: %s", i,
				      strerror(errno));
			goto out;
		}
		v->run = p;
		ret = kvm_setup_vcpu_cpu(vm->kvm_fd, v->fd, i, vm->nvcpus, sup,
					 err_msg);
		if (ret)
			goto out;
		ret = set_vcpu_signal_mask(v->fd);
		if (ret) {
			kvm_set_err(err_msg, ret, "vCPU %u: KVM_SET_SIGNAL_MASK: %s",
				i, strerror(-ret));
			goto out;
		}
	}
	ret = 0;
out:
	free(sup);
	return ret;
}

static int kvm_create_vm(const struct smvmm_backend_host *host,
			 const struct smvmm_vm_config *cfg, void **out,
			 char **err_msg)
{
	struct kvm_vm *vm;
	const char *knob;
	uint64_t addr;
	size_t hsz;
	int ret;

	if (err_msg)
		*err_msg = NULL;
	if (!host || !cfg || !out || cfg->struct_size < 8)
		return kvm_set_err(err_msg, -EINVAL, "create_vm: bad arguments");
	if (cfg->vcpus < 1)
		return kvm_set_err(err_msg, -EINVAL, "create_vm: vcpus must be >= 1");

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return kvm_set_err(err_msg, -ENOMEM, "out of memory");
	vm->kvm_fd = vm->vm_fd = -1;
	pthread_mutex_init(&vm->mem_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_mutex_init(&vm->kick_lock, NULL);
	atomic_init(&vm->stopping, false);

	/* Versioned table: copy what the caller has, the rest reads as 0. */
	hsz = host->struct_size < sizeof(vm->host) ? host->struct_size :
						     sizeof(vm->host);
	memcpy(&vm->host, host, hsz);
	vm->host.struct_size = sizeof(vm->host);

	knob = getenv("SMVMM_KVM_IGNORE_INSN_BYTES");
	vm->ignore_insn_bytes = knob && strcmp(knob, "1") == 0;

	ret = open_kvm(vm, err_msg);
	if (ret)
		goto err_vm;
	ret = check_caps(vm, err_msg);
	if (ret)
		goto err_vm;
	if (cfg->vcpus > max_vcpus(vm->kvm_fd)) {
		ret = kvm_set_err(err_msg, -EINVAL,
			      "create_vm: %u vCPUs requested, at most %u supported",
			      cfg->vcpus, max_vcpus(vm->kvm_fd));
		goto err_vm;
	}
	vm->nvcpus = cfg->vcpus;
	vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = kvm_set_err(err_msg, -ENOMEM, "out of memory");
		goto err_vm;
	}
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].index = i;
		vm->vcpus[i].fd = -1;
	}

	ret = install_kick_handler();
	if (ret) {
		kvm_set_err(err_msg, ret, "sigaction: %s", strerror(-ret));
		goto err_vm;
	}

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		vm->vm_fd = -1;
		ret = kvm_set_err(err_msg, -errno, "KVM_CREATE_VM: %s",
			      strerror(errno));
		goto err_vm;
	}
	/* Intel VMX needs a TSS and (without unrestricted guest) an identity
	 * page table somewhere in guest-physical space, below 4 GiB and out
	 * of RAM; both before any vCPU exists (KVM API doc). */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		ret = kvm_set_err(err_msg, -errno, "KVM_SET_TSS_ADDR: %s",
			      strerror(errno));
		goto err_vm;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
		  KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		addr = KVM_IDENTITY_MAP_ADDR;
		if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
			ret = kvm_set_err(err_msg, -errno,
				      "KVM_SET_IDENTITY_MAP_ADDR: %s",
				      strerror(errno));
			goto err_vm;
		}
	}
	/* PIC + IOAPIC (24 pins) in the kernel, LAPIC per vCPU; no PIT:
	 * the guest uses the LAPIC / TSC deadline timers. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = kvm_set_err(err_msg, -errno, "KVM_CREATE_IRQCHIP: %s",
			      strerror(errno));
		goto err_vm;
	}
	ret = create_vcpus(vm, err_msg);
	if (ret)
		goto err_vm;

	*out = vm;
	return 0;

err_vm:
	free_vm(vm);
	return ret;
}

/*
 * Kick every live vCPU thread out of KVM_RUN; they see `stopping` and end.
 * kick_lock (not run_lock) guards the thread handles so that a vCPU thread may
 * kick while stop() is joining: stop() marks a thread dead under kick_lock
 * before joining it, so no kick ever targets a joined thread.
 */
static void kick_all(struct kvm_vm *vm)
{
	atomic_store(&vm->stopping, true);
	pthread_mutex_lock(&vm->kick_lock);
	for (uint32_t i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].thread_live)
			pthread_kill(vm->vcpus[i].thread, KVM_KICK_SIGNAL);
	pthread_mutex_unlock(&vm->kick_lock);
}

static void kvm_stop(void *opaque)
{
	struct kvm_vm *vm = opaque;

	pthread_mutex_lock(&vm->run_lock);
	kick_all(vm);
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *v = &vm->vcpus[i];
		bool live;

		pthread_mutex_lock(&vm->kick_lock);
		live = v->thread_live;
		v->thread_live = false;
		pthread_mutex_unlock(&vm->kick_lock);
		if (live)
			pthread_join(v->thread, NULL);
	}
	vm->running = false;
	pthread_mutex_unlock(&vm->run_lock);
}

static void kvm_kick_vcpus(void *opaque)
{
	kick_all(opaque);
}

static int kvm_run_vm(void *opaque)
{
	struct kvm_vm *vm = opaque;
	sigset_t all, old;
	int ret = 0;

	pthread_mutex_lock(&vm->run_lock);
	if (vm->running) {
		ret = -EBUSY;
		goto out;
	}
	atomic_store(&vm->stopping, false);
	/*
	 * kvmclock counts from KVM_CREATE_VM; start the guest's clock at 0
	 * when its vCPUs first run instead (as QEMU does), so that the guest's
	 * timestamps measure the guest and not the VMM's set-up (loading the
	 * kernel).  A restored state keeps its own clock.  Best effort: a KVM
	 * without KVM_SET_CLOCK only shifts the timestamps.
	 */
	if (!vm->clock_set) {
		struct kvm_clock_data clock = { .clock = 0 };

		(void)ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock);
		vm->clock_set = true;
	}
	/* Threads inherit the creator's mask: start them with every signal
	 * blocked, so the kick is only taken inside KVM_RUN. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		struct kvm_vcpu *v = &vm->vcpus[i];
		int err = pthread_create(&v->thread, NULL, kvm_vcpu_thread, v);

		if (err) {
			ret = -err;
			break;
		}
		pthread_mutex_lock(&vm->kick_lock);
		v->thread_live = true;
		pthread_mutex_unlock(&vm->kick_lock);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	vm->running = true;
	if (ret) {
		pthread_mutex_unlock(&vm->run_lock);
		kvm_stop(vm);
		return ret;
	}
out:
	pthread_mutex_unlock(&vm->run_lock);
	return ret;
}

static void kvm_destroy_vm(void *opaque)
{
	struct kvm_vm *vm = opaque;

	if (!vm)
		return;
	kvm_stop(vm);
	free_vm(vm);
}

static int kvm_add_memory(void *opaque, uint32_t slot, uint64_t gpa,
			  uint64_t size, void *hva, int fd, uint64_t fd_offset)
{
	struct kvm_vm *vm = opaque;
	struct kvm_userspace_memory_region r;
	struct kvm_mem_region *n;

	(void)fd; /* KVM maps by host address; the memfd is the core's */
	(void)fd_offset;
	if (!hva || size == 0 || (gpa | size) & 4095 ||
	    ((uintptr_t)hva & 4095) || gpa + size < gpa)
		return -EINVAL;
	if ((int64_t)slot >= vm->max_slots || slot > 0xffff)
		return -ENOSPC;

	pthread_mutex_lock(&vm->mem_lock);
	for (size_t i = 0; i < vm->nregions; i++) {
		struct kvm_mem_region *m = &vm->regions[i];

		if (m->slot == slot ||
		    (gpa < m->gpa + m->size && m->gpa < gpa + size)) {
			pthread_mutex_unlock(&vm->mem_lock);
			return -EEXIST;
		}
	}
	n = realloc(vm->regions, (vm->nregions + 1) * sizeof(*n));
	if (!n) {
		pthread_mutex_unlock(&vm->mem_lock);
		return -ENOMEM;
	}
	vm->regions = n;

	memset(&r, 0, sizeof(r));
	r.slot = slot;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uintptr_t)hva;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		int err = errno;

		pthread_mutex_unlock(&vm->mem_lock);
		return -err;
	}
	vm->regions[vm->nregions++] = (struct kvm_mem_region){
		.slot = slot, .gpa = gpa, .size = size, .hva = hva,
	};
	pthread_mutex_unlock(&vm->mem_lock);
	return 0;
}

static int kvm_set_regs(void *opaque, uint32_t vcpu,
			const struct smvmm_x86_regs *r)
{
	struct kvm_vm *vm = opaque;

	int ret;

	if (vcpu >= vm->nvcpus || !r)
		return -EINVAL;
	/* A vCPU ioctl waits for the vCPU's mutex, which KVM_RUN holds for
	 * as long as the guest runs: refuse instead of hanging. */
	pthread_mutex_lock(&vm->run_lock);
	ret = vm->running ? -EBUSY : kvm_vcpu_set_regs(&vm->vcpus[vcpu], r);
	pthread_mutex_unlock(&vm->run_lock);
	return ret;
}

static int kvm_get_regs(void *opaque, uint32_t vcpu, struct smvmm_x86_regs *r)
{
	struct kvm_vm *vm = opaque;

	int ret;

	if (vcpu >= vm->nvcpus || !r)
		return -EINVAL;
	pthread_mutex_lock(&vm->run_lock);
	ret = vm->running ? -EBUSY : kvm_vcpu_get_regs(&vm->vcpus[vcpu], r);
	pthread_mutex_unlock(&vm->run_lock);
	return ret;
}

static int kvm_set_irq_line(void *opaque, uint32_t gsi, int level)
{
	struct kvm_vm *vm = opaque;
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };

	/* Default routing with KVM_CREATE_IRQCHIP: GSI 0-15 to PIC and IOAPIC,
	 * 16-23 to the IOAPIC only (KVM API doc, KVM_IRQ_LINE). */
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		return -errno;
	return 0;
}

static int kvm_irqfd(void *opaque, int fd, uint32_t gsi, int resample_fd,
		     bool deassign)
{
	struct kvm_vm *vm = opaque;
	struct kvm_irqfd f;

	if (fd < 0)
		return -EBADF;
	memset(&f, 0, sizeof(f));
	f.fd = (uint32_t)fd;
	f.gsi = gsi;
	if (deassign) {
		f.flags = KVM_IRQFD_FLAG_DEASSIGN;
	} else if (resample_fd >= 0) {
		/* Level-triggered: KVM deasserts the line at EOI and signals
		 * resample_fd so the device can re-raise it (KVM API doc,
		 * KVM_IRQFD, KVM_CAP_IRQFD_RESAMPLE). */
		f.flags = KVM_IRQFD_FLAG_RESAMPLE;
		f.resamplefd = (uint32_t)resample_fd;
	}
	if (ioctl(vm->vm_fd, KVM_IRQFD, &f) < 0)
		return -errno;
	return 0;
}

static int kvm_ioeventfd(void *opaque, uint64_t addr, uint32_t len,
			 uint64_t datamatch, int fd, bool deassign)
{
	struct kvm_vm *vm = opaque;
	struct kvm_ioeventfd e;

	if (fd < 0)
		return -EBADF;
	if (len != 1 && len != 2 && len != 4 && len != 8)
		return -EINVAL;
	memset(&e, 0, sizeof(e));
	e.addr = addr;
	e.len = len;
	e.fd = fd;
	e.datamatch = datamatch;
	e.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (deassign)
		e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0)
		return -errno;
	return 0;
}

static int kvm_save(void *opaque, void **data, size_t *len)
{
	struct kvm_vm *vm = opaque;
	int ret;

	if (!data || !len)
		return -EINVAL;
	pthread_mutex_lock(&vm->run_lock);
	ret = vm->running ? -EBUSY : kvm_save_state(vm, data, len);
	pthread_mutex_unlock(&vm->run_lock);
	return ret;
}

static int kvm_restore(void *opaque, const void *data, size_t len)
{
	struct kvm_vm *vm = opaque;
	int ret;

	pthread_mutex_lock(&vm->run_lock);
	ret = vm->running ? -EBUSY : kvm_restore_state(vm, data, len);
	if (!ret)
		vm->clock_set = true;
	pthread_mutex_unlock(&vm->run_lock);
	return ret;
}

static const struct smvmm_backend_ops kvm_ops = {
	.struct_size = sizeof(struct smvmm_backend_ops),
	.create_vm = kvm_create_vm,
	.destroy_vm = kvm_destroy_vm,
	.add_memory = kvm_add_memory,
	.set_regs = kvm_set_regs,
	.get_regs = kvm_get_regs,
	.run = kvm_run_vm,
	.stop = kvm_stop,
	.set_irq_line = kvm_set_irq_line,
	.irqfd = kvm_irqfd,
	.ioeventfd = kvm_ioeventfd,
	.kick_vcpus = kvm_kick_vcpus,
	.save_state = kvm_save,
	.restore_state = kvm_restore,
};

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc smvmm_plugin_v1 = {
	.abi_major = SMVMM_PLUGIN_ABI_MAJOR,
	.abi_minor = SMVMM_PLUGIN_ABI_MINOR,
	.struct_size = sizeof(struct smvmm_plugin_desc),
	.kind = SMVMM_PLUGIN_BACKEND,
	.name = "kvm",
	.version = "0.1.0",
	.description = "Linux KVM: in-kernel irqchip, irqfd, ioeventfd",
	.config_keys = NULL,
	.ops = &kvm_ops,
};
