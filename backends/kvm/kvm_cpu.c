// SPDX-License-Identifier: MIT
/*
 * Per-vCPU boot state: CPUID normalization, boot MSRs, FPU and LAPIC LINT
 * pins.  The choices follow what Firecracker documents (docs/cpu_templates/
 * cpuid-normalization.md, boot-protocol.md) and what kvmtool does; the bit
 * positions are from the Intel SDM Vol. 2A, CPUID instruction, and the AMD
 * APM Vol. 3, Appendix E.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm_internal.h"

/* CPUID leaf 1 */
#define CPUID1_EBX_CLFLUSH_SHIFT 8
#define CPUID1_EBX_COUNT_SHIFT 16
#define CPUID1_EBX_APICID_SHIFT 24
#define CPUID1_ECX_PDCM (1u << 15)
#define CPUID1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT (1u << 28)
/* CPUID leaf 6 (Intel) */
#define CPUID6_EAX_TURBO (1u << 1)
#define CPUID6_ECX_EPB (1u << 3)
/* CPUID leaf 0xB / 0x1F level types (SDM: "V2 Extended Topology") */
#define TOPO_LEVEL_INVALID 0u
#define TOPO_LEVEL_SMT 1u
#define TOPO_LEVEL_CORE 2u

/* MSR indices (SDM Vol. 4) */
#define MSR_IA32_TSC 0x10u
#define MSR_IA32_SYSENTER_CS 0x174u
#define MSR_IA32_SYSENTER_ESP 0x175u
#define MSR_IA32_SYSENTER_EIP 0x176u
#define MSR_IA32_MISC_ENABLE 0x1a0u
#define MSR_IA32_MISC_ENABLE_FAST_STRING 1ull
#define MSR_MTRR_DEF_TYPE 0x2ffu
#define MTRR_DEF_TYPE_E (1ull << 11)
#define MTRR_TYPE_WB 6ull
#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define MSR_CSTAR 0xc0000083u
#define MSR_SYSCALL_MASK 0xc0000084u
#define MSR_KERNEL_GS_BASE 0xc0000102u

/* LAPIC register offsets (SDM Vol. 3 §11.5.1, Table 11-1) */
#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_MASK 0x700u
#define APIC_MODE_NMI 0x4u
#define APIC_MODE_EXTINT 0x7u

int kvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out)
{
	/* KVM answers E2BIG while the table is too small (KVM API doc,
	 * KVM_GET_SUPPORTED_CPUID); grow until it fits, with a sane cap. */
	for (uint32_t nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c;

		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return -errno;
	}
	return -E2BIG;
}

static bool is_intel(const struct kvm_cpuid2 *c)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		/* "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel" */
		if (e->function == 0)
			return e->ebx == 0x756e6547 && e->edx == 0x49656e69 &&
			       e->ecx == 0x6c65746e;
	}
	return false;
}

static bool is_amd(const struct kvm_cpuid2 *c)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		/* "AuthenticAMD" */
		if (e->function == 0)
			return e->ebx == 0x68747541 && e->edx == 0x69746e65 &&
			       e->ecx == 0x444d4163;
	}
	return false;
}

static uint32_t basic_max_leaf(const struct kvm_cpuid2 *c)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0)
			return c->entries[i].eax;
	return 0;
}

static bool has_leaf(const struct kvm_cpuid2 *c, uint32_t fn)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn)
			return true;
	return false;
}

/* ceil(log2(n)) for n >= 1: the width of the core-id field in the APIC id. */
static uint32_t order_base_2(uint32_t n)
{
	uint32_t s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

/*
 * Replace every subleaf of `fn` (0xB or 0x1F) by our topology: one package of
 * `n` cores with one thread each, so the x2APIC id is the vCPU index (SDM
 * Vol. 2A, CPUID leaf 0BH / 1FH; Vol. 3 §10.12.8.1).
 */
static int set_topology_leaf(struct kvm_cpuid2 *c, uint32_t cap, uint32_t fn,
			     uint32_t index, uint32_t n)
{
	uint32_t j = 0;

	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != fn)
			c->entries[j++] = c->entries[i];
	c->nent = j;
	if (c->nent + 3 > cap)
		return -ENOSPC;

	for (uint32_t sub = 0; sub < 3; sub++) {
		struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

		memset(e, 0, sizeof(*e));
		e->function = fn;
		e->index = sub;
		e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
		e->edx = index; /* x2APIC id of this vCPU, on every subleaf */
		switch (sub) {
		case 0: /* SMT level: 1 thread per core, no id bits */
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (TOPO_LEVEL_SMT << 8) | sub;
			break;
		case 1: /* core level: n cores in the package */
			e->eax = order_base_2(n);
			e->ebx = n;
			e->ecx = (TOPO_LEVEL_CORE << 8) | sub;
			break;
		default: /* terminating invalid level */
			e->ecx = (TOPO_LEVEL_INVALID << 8) | sub;
			break;
		}
	}
	return 0;
}

int kvm_normalize_cpuid(struct kvm_cpuid2 *c, uint32_t cap, uint32_t index,
			uint32_t n, bool tsc_deadline)
{
	bool intel = is_intel(c), amd = is_amd(c);
	uint32_t max_leaf = basic_max_leaf(c);
	uint32_t count = n > 255 ? 255 : n;
	int ret;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 0x1:
			/* CLFLUSH line size in 8-byte units (64 bytes),
			 * logical processor count, initial APIC id. */
			e->ebx = (e->ebx & 0xffu) |
				 (8u << CPUID1_EBX_CLFLUSH_SHIFT) |
				 (count << CPUID1_EBX_COUNT_SHIFT) |
				 (index << CPUID1_EBX_APICID_SHIFT);
			/* No perf/debug capability MSR: we give no PMU. */
			e->ecx &= ~CPUID1_ECX_PDCM;
			e->ecx |= CPUID1_ECX_HYPERVISOR;
			/* The in-kernel LAPIC emulates the TSC deadline timer
			 * even where GET_SUPPORTED_CPUID leaves it out (KVM
			 * API doc, KVM_CAP_TSC_DEADLINE_TIMER). */
			if (tsc_deadline)
				e->ecx |= CPUID1_ECX_TSC_DEADLINE;
			/* HTT means "EBX[23:16] is valid": only with >1 CPU. */
			if (n > 1)
				e->edx |= CPUID1_EDX_HTT;
			else
				e->edx &= ~CPUID1_EDX_HTT;
			break;
		case 0x4:
			if (!intel)
				break;
			/* EAX[31:26]: cores per package - 1; EAX[25:14]:
			 * threads sharing this cache - 1: one per core for L1
			 * and L2, the whole package for L3 and beyond. */
			if ((e->eax & 0x1f) == 0) /* no more caches */
				break;
			e->eax &= 0x3fffu;
			e->eax |= ((n - 1 > 63 ? 63 : n - 1) & 0x3fu) << 26;
			if (((e->eax >> 5) & 0x7) >= 3)
				e->eax |= ((n - 1) & 0xfffu) << 14;
			break;
		case 0x6:
			/* No turbo boost and no energy/perf bias MSR: the
			 * guest cannot manage host power (kvmtool and
			 * Firecracker clear the same bits). */
			e->eax &= ~CPUID6_EAX_TURBO;
			e->ecx &= ~CPUID6_ECX_EPB;
			break;
		case 0xa:
			/* Architectural performance monitoring: none. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0x80000008:
			if (!amd)
				break;
			/* ECX[7:0] threads in package - 1, [15:12] APIC id
			 * size (AMD APM Vol. 3, CPUID Fn8000_0008). */
			e->ecx = (e->ecx & ~0xf0ffu) |
				 (order_base_2(n) << 12) | ((n - 1) & 0xffu);
			break;
		case 0x8000001e:
			if (!amd)
				break;
			/* Extended APIC id, compute unit = core, one node. */
			e->eax = index;
			e->ebx = index & 0xffu;
			e->ecx = 0;
			break;
		default:
			break;
		}
	}

	if (max_leaf >= 0xb) {
		ret = set_topology_leaf(c, cap, 0xb, index, n);
		if (ret)
			return ret;
	}
	if (max_leaf >= 0x1f && has_leaf(c, 0x1f)) {
		ret = set_topology_leaf(c, cap, 0x1f, index, n);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Boot MSRs as Firecracker documents them (docs/cpu_templates/
 * boot-protocol.md): syscall/sysenter state and the TSC at 0, fast strings
 * enabled, and MTRRs enabled with write-back as the default type so the
 * guest does not run uncached.
 */
static const struct {
	uint32_t index;
	uint64_t value;
	const char *name;
} boot_msrs[] = {
	{ MSR_IA32_SYSENTER_CS, 0, "IA32_SYSENTER_CS" },
	{ MSR_IA32_SYSENTER_ESP, 0, "IA32_SYSENTER_ESP" },
	{ MSR_IA32_SYSENTER_EIP, 0, "IA32_SYSENTER_EIP" },
	{ MSR_STAR, 0, "STAR" },
	{ MSR_CSTAR, 0, "CSTAR" },
	{ MSR_KERNEL_GS_BASE, 0, "KERNEL_GS_BASE" },
	{ MSR_SYSCALL_MASK, 0, "SYSCALL_MASK" },
	{ MSR_LSTAR, 0, "LSTAR" },
	{ MSR_IA32_TSC, 0, "IA32_TSC" },
	{ MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING,
	  "IA32_MISC_ENABLE" },
	{ MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_E | MTRR_TYPE_WB,
	  "IA32_MTRR_DEF_TYPE" },
};

#define N_BOOT_MSRS (sizeof(boot_msrs) / sizeof(boot_msrs[0]))

static int set_boot_msrs(int vcpu_fd, uint32_t index, char **err_msg)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N_BOOT_MSRS];
	} m;
	int n;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = N_BOOT_MSRS;
	for (size_t i = 0; i < N_BOOT_MSRS; i++) {
		m.e[i].index = boot_msrs[i].index;
		m.e[i].data = boot_msrs[i].value;
	}
	/* KVM_SET_MSRS returns how many it set; it stops at the first one it
	 * refuses (KVM API doc). */
	n = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (n < 0)
		return kvm_set_err(err_msg, -errno, "vCPU %u: KVM_SET_MSRS: %s",
				  index, strerror(errno));
	if ((size_t)n < N_BOOT_MSRS)
		return kvm_set_err(err_msg, -EINVAL,
				  "vCPU %u: KVM_SET_MSRS: KVM refused MSR %s (0x%x)",
				  index, boot_msrs[n].name, boot_msrs[n].index);
	return 0;
}

static int set_boot_fpu(int vcpu_fd, uint32_t index, char **err_msg)
{
	struct kvm_fpu fpu;

	/* FNINIT state for x87 (SDM Vol. 1 §8.1.5: FCW 0x37f) and the power-on
	 * MXCSR (SDM Vol. 1 §10.2.3.1: 0x1f80, all exceptions masked). */
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return kvm_set_err(err_msg, -errno, "vCPU %u: KVM_SET_FPU: %s",
				  index, strerror(errno));
	return 0;
}

static uint32_t lapic_get(const struct kvm_lapic_state *s, size_t off)
{
	uint32_t v;

	memcpy(&v, &s->regs[off], sizeof(v));
	return v;
}

static void lapic_set(struct kvm_lapic_state *s, size_t off, uint32_t v)
{
	memcpy(&s->regs[off], &v, sizeof(v));
}

static int set_boot_lapic(int vcpu_fd, uint32_t index, char **err_msg)
{
	struct kvm_lapic_state s;
	uint32_t v;

	/* Virtual wire mode (MP spec 1.4 §3.6.2.2): LINT0 takes the PIC's
	 * ExtINT, LINT1 takes NMI, as a BIOS leaves it for Linux. */
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &s) < 0)
		return kvm_set_err(err_msg, -errno, "vCPU %u: KVM_GET_LAPIC: %s",
				  index, strerror(errno));
	v = lapic_get(&s, APIC_LVT_LINT0);
	lapic_set(&s, APIC_LVT_LINT0,
		  (v & ~APIC_MODE_MASK) | (APIC_MODE_EXTINT << 8));
	v = lapic_get(&s, APIC_LVT_LINT1);
	lapic_set(&s, APIC_LVT_LINT1,
		  (v & ~APIC_MODE_MASK) | (APIC_MODE_NMI << 8));
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &s) < 0)
		return kvm_set_err(err_msg, -errno, "vCPU %u: KVM_SET_LAPIC: %s",
				  index, strerror(errno));
	return 0;
}

int kvm_setup_vcpu_cpu(int kvm_fd, int vcpu_fd, uint32_t index,
		       uint32_t nvcpus, const struct kvm_cpuid2 *sup,
		       char **err_msg)
{
	struct kvm_cpuid2 *c;
	uint32_t cap = sup->nent + 8; /* room for topology subleaves */
	bool tsc_deadline;
	int ret;

	c = calloc(1, sizeof(*c) + cap * sizeof(c->entries[0]));
	if (!c)
		return kvm_set_err(err_msg, -ENOMEM, "out of memory");
	memcpy(c, sup, sizeof(*c) + sup->nent * sizeof(sup->entries[0]));
	tsc_deadline = ioctl(kvm_fd, KVM_CHECK_EXTENSION,
			     KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	ret = kvm_normalize_cpuid(c, cap, index, nvcpus, tsc_deadline);
	if (ret) {
		kvm_set_err(err_msg, ret, "vCPU %u: CPUID table too large",
			   index);
		goto out;
	}
	if (ioctl(vcpu_fd, KVM_SET_CPUID2, c) < 0) {
		ret = kvm_set_err(err_msg, -errno, "vCPU %u: KVM_SET_CPUID2: %s",
				 index, strerror(errno));
		goto out;
	}
	/* After CPUID: KVM validates MSRs against the guest's CPUID. */
	ret = set_boot_msrs(vcpu_fd, index, err_msg);
	if (ret)
		goto out;
	ret = set_boot_fpu(vcpu_fd, index, err_msg);
	if (ret)
		goto out;
	ret = set_boot_lapic(vcpu_fd, index, err_msg);
out:
	free(c);
	return ret;
}
