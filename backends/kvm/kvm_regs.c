// SPDX-License-Identifier: MIT
/*
 * struct smvmm_x86_regs <-> struct kvm_regs + struct kvm_sregs, and the
 * register dump used in crash reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm_internal.h"

/* RFLAGS bit 1 is reserved and always 1 (SDM Vol. 1 §3.4.3). */
#define RFLAGS_FIXED 0x2ull

static void seg_from_kvm(struct smvmm_x86_segment *d,
			 const struct kvm_segment *s)
{
	d->base = s->base;
	d->limit = s->limit;
	d->selector = s->selector;
	d->type = s->type;
	d->present = s->present;
	d->dpl = s->dpl;
	d->db = s->db;
	d->s = s->s;
	d->l = s->l;
	d->g = s->g;
	d->avl = s->avl;
}

static void seg_to_kvm(struct kvm_segment *d,
		       const struct smvmm_x86_segment *s)
{
	d->base = s->base;
	d->limit = s->limit;
	d->selector = s->selector;
	d->type = s->type;
	d->present = s->present;
	d->dpl = s->dpl;
	d->db = s->db;
	d->s = s->s;
	d->l = s->l;
	d->g = s->g;
	d->avl = s->avl;
	/* KVM derives "unusable" from present (KVM API doc, kvm_segment);
	 * a non-present segment must say so for VMX entry checks. */
	d->unusable = !s->present;
	d->padding = 0;
}

int kvm_vcpu_get_regs(struct kvm_vcpu *v, struct smvmm_x86_regs *r)
{
	struct kvm_regs kr;
	struct kvm_sregs ks;

	if (ioctl(v->fd, KVM_GET_REGS, &kr) < 0)
		return -errno;
	if (ioctl(v->fd, KVM_GET_SREGS, &ks) < 0)
		return -errno;

	memset(r, 0, sizeof(*r));
	r->rax = kr.rax;
	r->rbx = kr.rbx;
	r->rcx = kr.rcx;
	r->rdx = kr.rdx;
	r->rsi = kr.rsi;
	r->rdi = kr.rdi;
	r->rsp = kr.rsp;
	r->rbp = kr.rbp;
	r->r8 = kr.r8;
	r->r9 = kr.r9;
	r->r10 = kr.r10;
	r->r11 = kr.r11;
	r->r12 = kr.r12;
	r->r13 = kr.r13;
	r->r14 = kr.r14;
	r->r15 = kr.r15;
	r->rip = kr.rip;
	r->rflags = kr.rflags;

	seg_from_kvm(&r->cs, &ks.cs);
	seg_from_kvm(&r->ds, &ks.ds);
	seg_from_kvm(&r->es, &ks.es);
	seg_from_kvm(&r->fs, &ks.fs);
	seg_from_kvm(&r->gs, &ks.gs);
	seg_from_kvm(&r->ss, &ks.ss);
	seg_from_kvm(&r->tr, &ks.tr);
	seg_from_kvm(&r->ldt, &ks.ldt);
	r->gdt.base = ks.gdt.base;
	r->gdt.limit = ks.gdt.limit;
	r->idt.base = ks.idt.base;
	r->idt.limit = ks.idt.limit;
	r->cr0 = ks.cr0;
	r->cr2 = ks.cr2;
	r->cr3 = ks.cr3;
	r->cr4 = ks.cr4;
	r->cr8 = ks.cr8;
	r->efer = ks.efer;
	return 0;
}

int kvm_vcpu_set_regs(struct kvm_vcpu *v, const struct smvmm_x86_regs *r)
{
	struct kvm_regs kr;
	struct kvm_sregs ks;

	/* Read first: apic_base and the pending-interrupt bitmap are not in
	 * smvmm_x86_regs and must keep the values KVM gave them. */
	if (ioctl(v->fd, KVM_GET_SREGS, &ks) < 0)
		return -errno;

	seg_to_kvm(&ks.cs, &r->cs);
	seg_to_kvm(&ks.ds, &r->ds);
	seg_to_kvm(&ks.es, &r->es);
	seg_to_kvm(&ks.fs, &r->fs);
	seg_to_kvm(&ks.gs, &r->gs);
	seg_to_kvm(&ks.ss, &r->ss);
	seg_to_kvm(&ks.tr, &r->tr);
	seg_to_kvm(&ks.ldt, &r->ldt);
	ks.gdt.base = r->gdt.base;
	ks.gdt.limit = r->gdt.limit;
	ks.idt.base = r->idt.base;
	ks.idt.limit = r->idt.limit;
	ks.cr0 = r->cr0;
	ks.cr2 = r->cr2;
	ks.cr3 = r->cr3;
	ks.cr4 = r->cr4;
	ks.cr8 = r->cr8;
	ks.efer = r->efer;
	if (ioctl(v->fd, KVM_SET_SREGS, &ks) < 0)
		return -errno;

	memset(&kr, 0, sizeof(kr));
	kr.rax = r->rax;
	kr.rbx = r->rbx;
	kr.rcx = r->rcx;
	kr.rdx = r->rdx;
	kr.rsi = r->rsi;
	kr.rdi = r->rdi;
	kr.rsp = r->rsp;
	kr.rbp = r->rbp;
	kr.r8 = r->r8;
	kr.r9 = r->r9;
	kr.r10 = r->r10;
	kr.r11 = r->r11;
	kr.r12 = r->r12;
	kr.r13 = r->r13;
	kr.r14 = r->r14;
	kr.r15 = r->r15;
	kr.rip = r->rip;
	kr.rflags = r->rflags | RFLAGS_FIXED;
	if (ioctl(v->fd, KVM_SET_REGS, &kr) < 0)
		return -errno;

	/*
	 * With an in-kernel irqchip every vCPU but the BSP (id 0) starts in
	 * KVM_MP_STATE_UNINITIALIZED, waiting for INIT/SIPI (KVM API doc,
	 * KVM_GET_MP_STATE).  An AP given registers is meant to run them.
	 */
	if (v->index != 0) {
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
			return -errno;
	}
	return 0;
}

static int fmt_seg(char *buf, size_t size, const char *name,
		   const struct kvm_segment *s)
{
	return snprintf(buf, size,
			"%-3s=%04x base=%016" PRIx64 " limit=%08x type=%x "
			"p=%u dpl=%u db=%u s=%u l=%u g=%u\n",
			name, s->selector, (uint64_t)s->base, s->limit,
			s->type, s->present, s->dpl, s->db, s->s, s->l, s->g);
}

/* Append to buf[*pos..size), keeping *pos <= size - 1 on truncation. */
static void append(size_t size, size_t *pos, int n)
{
	if (n < 0)
		return;
	if ((size_t)n >= size - *pos)
		*pos = size - 1;
	else
		*pos += (size_t)n;
}

int kvm_format_regs(struct kvm_vcpu *v, char *buf, size_t size)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	size_t pos = 0;

	if (size == 0)
		return -EINVAL;
	buf[0] = '\0';
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		int err = errno;

		snprintf(buf, size, "(registers unavailable: %s)\n",
			 strerror(err));
		return -err;
	}
	append(size, &pos, snprintf(buf + pos, size - pos,
		"rip=%016llx rsp=%016llx rflags=%016llx\n"
		"rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"rsi=%016llx rdi=%016llx rbp=%016llx\n"
		"r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n"
		"r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n"
		"cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx\n"
		"cr8=%016llx efer=%016llx apic_base=%016llx\n",
		r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi,
		r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
		r.r15, s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer,
		s.apic_base));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "cs", &s.cs));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "ss", &s.ss));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "ds", &s.ds));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "es", &s.es));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "fs", &s.fs));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "gs", &s.gs));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "tr", &s.tr));
	append(size, &pos, fmt_seg(buf + pos, size - pos, "ldt", &s.ldt));
	append(size, &pos, snprintf(buf + pos, size - pos,
		"gdt base=%016llx limit=%04x idt base=%016llx limit=%04x\n",
		s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit));
	return 0;
}

size_t kvm_read_guest_phys(struct kvm_vm *vm, uint64_t gpa, void *buf,
			   size_t len)
{
	uint8_t *out = buf;
	size_t done = 0;

	pthread_mutex_lock(&vm->mem_lock);
	while (done < len) {
		uint64_t a = gpa + done;
		const struct kvm_mem_region *hit = NULL;
		size_t n;

		if (a < gpa) /* wrapped */
			break;
		for (size_t i = 0; i < vm->nregions; i++) {
			const struct kvm_mem_region *m = &vm->regions[i];

			if (a >= m->gpa && a - m->gpa < m->size) {
				hit = m;
				break;
			}
		}
		if (!hit)
			break;
		n = len - done;
		if (n > hit->size - (a - hit->gpa))
			n = hit->size - (a - hit->gpa);
		memcpy(out + done, hit->hva + (a - hit->gpa), n);
		done += n;
	}
	pthread_mutex_unlock(&vm->mem_lock);
	return done;
}
