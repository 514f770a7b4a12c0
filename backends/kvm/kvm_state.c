// SPDX-License-Identifier: MIT
/*
 * save_state / restore_state: the hypervisor-side state of a stopped VM as
 * one blob, for snapshots.  Guest RAM and device state are the core's.
 *
 * The blob is the backend's own format (little-endian, x86_64 KVM uapi
 * structs, which are stable ABI):
 *
 *   struct state_hdr
 *   VM:     struct kvm_irqchip PIC master, PIC slave, IOAPIC
 *           struct kvm_clock_data
 *   vCPU i: struct kvm_regs, kvm_sregs, kvm_xcrs, kvm_lapic_state,
 *           kvm_mp_state, kvm_vcpu_events, kvm_debugregs,
 *           xsave_size bytes of struct kvm_xsave,
 *           uint32_t nmsrs, uint32_t pad, nmsrs x struct kvm_msr_entry
 *
 * A restored blob is untrusted input: the header, every length and count are
 * checked before anything is read, and KVM validates the register contents
 * itself (KVM_SET_* fail with EINVAL on reserved bits).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm_internal.h"

#define STATE_MAGIC "SMVKVMST"
#define STATE_VERSION 1u
/* More MSRs than any KVM lists today (~150), small enough to bound input. */
#define STATE_MAX_MSRS 1024u
#define XSAVE_MIN 4096u
#define XSAVE_MAX (1u << 20)

struct state_hdr {
	char magic[8];
	uint32_t version;
	uint32_t nvcpus;
	uint32_t xsave_size;
	uint32_t reserved;
};

/* A growing output buffer. */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct wbuf *b, const void *src, size_t n)
{
	if (b->err)
		return;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 65536;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

/* A bounds-checked reader over untrusted input. */
struct rbuf {
	const uint8_t *p;
	size_t len, off;
};

static int get(struct rbuf *b, void *dst, size_t n)
{
	if (b->len - b->off < n)
		return -EINVAL;
	memcpy(dst, b->p + b->off, n);
	b->off += n;
	return 0;
}

static uint32_t xsave_size(struct kvm_vm *vm)
{
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	/* KVM API doc, KVM_GET_XSAVE2: at least 4096, more with dynamic
	 * features (AMX) enabled. */
	return n > (int)XSAVE_MIN ? (uint32_t)n : XSAVE_MIN;
}

static int get_xsave(struct kvm_vm *vm, struct kvm_vcpu *v, void *buf,
		     uint32_t size)
{
	if (size > XSAVE_MIN)
		return ioctl(v->fd, KVM_GET_XSAVE2, buf) < 0 ? -errno : 0;
	(void)vm;
	return ioctl(v->fd, KVM_GET_XSAVE, buf) < 0 ? -errno : 0;
}

/*
 * Every MSR KVM says is worth saving (KVM_GET_MSR_INDEX_LIST) that this vCPU
 * can read: KVM_GET_MSRS stops at the first MSR it refuses (one not in this
 * guest's CPUID), so skip that one and go on.
 */
static int save_msrs(struct kvm_vcpu *v, const struct kvm_msr_list *list,
		     struct wbuf *b)
{
	uint32_t n = list->nmsrs, got = 0, pad = 0, i = 0;
	struct kvm_msr_entry *out;
	struct kvm_msrs *m;
	int ret = 0;

	m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
	out = calloc(n ? n : 1, sizeof(*out));
	if (!m || !out) {
		ret = -ENOMEM;
		goto out;
	}
	while (i < n) {
		int r;

		memset(m->entries, 0, (n - i) * sizeof(m->entries[0]));
		m->nmsrs = n - i;
		for (uint32_t j = i; j < n; j++)
			m->entries[j - i].index = list->indices[j];
		r = ioctl(v->fd, KVM_GET_MSRS, m);
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		memcpy(&out[got], m->entries, (size_t)r * sizeof(out[0]));
		got += (uint32_t)r;
		i += (uint32_t)r + 1; /* skip the refused one, if any */
	}
	put(b, &got, sizeof(got));
	put(b, &pad, sizeof(pad));
	put(b, out, got * sizeof(out[0]));
out:
	free(out);
	free(m);
	return ret;
}

static int get_msr_list(struct kvm_vm *vm, struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;

	/* First call answers E2BIG with the count (KVM API doc). */
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 &&
	    errno != E2BIG)
		return -errno;
	if (probe.nmsrs > STATE_MAX_MSRS)
		return -E2BIG;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int err = -errno;

		free(l);
		return err;
	}
	*out = l;
	return 0;
}

static int save_vcpu(struct kvm_vm *vm, struct kvm_vcpu *v,
		     const struct kvm_msr_list *msrs, uint32_t xs, void *xbuf,
		     struct wbuf *b)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dr;
	int ret;

	memset(&xcrs, 0, sizeof(xcrs));
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0 ||
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &dr) < 0)
		return -errno;
	/* XCRs exist only with XSAVE in the guest CPUID (KVM_CAP_XCRS). */
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
	    ioctl(v->fd, KVM_GET_XCRS, &xcrs) < 0)
		return -errno;
	memset(xbuf, 0, xs);
	ret = get_xsave(vm, v, xbuf, xs);
	if (ret)
		return ret;
	put(b, &regs, sizeof(regs));
	put(b, &sregs, sizeof(sregs));
	put(b, &xcrs, sizeof(xcrs));
	put(b, &lapic, sizeof(lapic));
	put(b, &mp, sizeof(mp));
	put(b, &ev, sizeof(ev));
	put(b, &dr, sizeof(dr));
	put(b, xbuf, xs);
	return save_msrs(v, msrs, b);
}

int kvm_save_state(struct kvm_vm *vm, void **data, size_t *len)
{
	struct state_hdr h;
	struct kvm_irqchip chip;
	struct kvm_clock_data clock;
	struct kvm_msr_list *msrs = NULL;
	struct wbuf b = { 0 };
	uint32_t xs = xsave_size(vm);
	void *xbuf = NULL;
	int ret;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, STATE_MAGIC, sizeof(h.magic));
	h.version = STATE_VERSION;
	h.nvcpus = vm->nvcpus;
	h.xsave_size = xs;
	put(&b, &h, sizeof(h));

	for (uint32_t id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC;
	     id++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			ret = -errno;
			goto out;
		}
		put(&b, &chip, sizeof(chip));
	}
	memset(&clock, 0, sizeof(clock));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0) {
		ret = -errno;
		goto out;
	}
	put(&b, &clock, sizeof(clock));

	ret = get_msr_list(vm, &msrs);
	if (ret)
		goto out;
	xbuf = malloc(xs);
	if (!xbuf) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < vm->nvcpus; i++) {
		ret = save_vcpu(vm, &vm->vcpus[i], msrs, xs, xbuf, &b);
		if (ret)
			goto out;
	}
	ret = b.err;
out:
	free(xbuf);
	free(msrs);
	if (ret) {
		free(b.p);
		return ret;
	}
	*data = b.p;
	*len = b.len;
	return 0;
}

static int restore_vcpu(struct kvm_vm *vm, struct kvm_vcpu *v,
			struct rbuf *b, uint32_t xs, void *xbuf)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dr;
	struct kvm_msrs *m;
	uint32_t nmsrs, pad;
	int r;

	if (get(b, &regs, sizeof(regs)) || get(b, &sregs, sizeof(sregs)) ||
	    get(b, &xcrs, sizeof(xcrs)) || get(b, &lapic, sizeof(lapic)) ||
	    get(b, &mp, sizeof(mp)) || get(b, &ev, sizeof(ev)) ||
	    get(b, &dr, sizeof(dr)) || get(b, xbuf, xs) ||
	    get(b, &nmsrs, sizeof(nmsrs)) || get(b, &pad, sizeof(pad)))
		return -EINVAL;
	if (nmsrs > STATE_MAX_MSRS || xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EINVAL;
	m = calloc(1, sizeof(*m) + nmsrs * sizeof(m->entries[0]));
	if (!m)
		return -ENOMEM;
	m->nmsrs = nmsrs;
	if (get(b, m->entries, nmsrs * sizeof(m->entries[0]))) {
		free(m);
		return -EINVAL;
	}

	/*
	 * Order as QEMU and Firecracker restore: system registers (EFER,
	 * CR*) before the MSRs that depend on them, XCR0 before the XSAVE
	 * area, the LAPIC before MSRs such as TSC_DEADLINE that program it,
	 * pending events last.
	 */
	r = -EINVAL;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		goto err;
	if (xcrs.nr_xcrs && ioctl(v->fd, KVM_SET_XCRS, &xcrs) < 0)
		goto err;
	if (ioctl(v->fd, KVM_SET_XSAVE, xbuf) < 0 ||
	    ioctl(v->fd, KVM_SET_DEBUGREGS, &dr) < 0 ||
	    ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0)
		goto err;
	r = ioctl(v->fd, KVM_SET_MSRS, m);
	if (r < 0)
		goto err;
	if ((uint32_t)r != nmsrs) {
		errno = EINVAL; /* KVM refused MSR number r */
		goto err;
	}
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0 ||
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		goto err;
	free(m);
	(void)vm;
	return 0;
err:
	r = errno ? -errno : -EINVAL;
	free(m);
	return r;
}

int kvm_restore_state(struct kvm_vm *vm, const void *data, size_t len)
{
	struct rbuf b = { .p = data, .len = len, .off = 0 };
	struct state_hdr h;
	struct kvm_irqchip chip[3];
	struct kvm_clock_data clock;
	void *xbuf;
	int ret = 0;

	if (!data || get(&b, &h, sizeof(h)))
		return -EINVAL;
	if (memcmp(h.magic, STATE_MAGIC, sizeof(h.magic)) != 0 ||
	    h.version != STATE_VERSION || h.nvcpus != vm->nvcpus ||
	    h.xsave_size < XSAVE_MIN || h.xsave_size > XSAVE_MAX ||
	    h.xsave_size != xsave_size(vm))
		return -EINVAL;
	for (int i = 0; i < 3; i++) {
		if (get(&b, &chip[i], sizeof(chip[i])) ||
		    chip[i].chip_id != (uint32_t)i)
			return -EINVAL;
	}
	if (get(&b, &clock, sizeof(clock)))
		return -EINVAL;

	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
			return -errno;
	/* Only KVM_CLOCK_REALTIME may be passed back (KVM API doc,
	 * KVM_SET_CLOCK); restore the plain kvmclock value. */
	clock.flags = 0;
	clock.realtime = 0;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return -errno;

	xbuf = malloc(h.xsave_size);
	if (!xbuf)
		return -ENOMEM;
	for (uint32_t i = 0; i < vm->nvcpus && !ret; i++)
		ret = restore_vcpu(vm, &vm->vcpus[i], &b, h.xsave_size, xbuf);
	free(xbuf);
	if (!ret && b.off != b.len)
		ret = -EINVAL; /* trailing garbage */
	return ret;
}
