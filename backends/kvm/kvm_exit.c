// SPDX-License-Identifier: MIT
/*
 * The vCPU thread: KVM_RUN loop and exit handling (KVM API doc, "The kvm_run
 * structure").  Port and MMIO exits go to the host callbacks; anything that
 * ends the VM is reported once through host.vm_stopped with a description a
 * human can debug from (exit reason, suberror, RIP, instruction bytes,
 * registers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "kvm_internal.h"

#define MSG_SIZE 4096
/* Longest x86 instruction (SDM Vol. 2A §2.3.11). */
#define X86_MAX_INSN 15

static void stopped(struct kvm_vcpu *v, enum smvmm_stop_reason reason,
		    const char *msg)
{
	if (v->vm->host.vm_stopped)
		v->vm->host.vm_stopped(v->vm->host.opaque, v->index, reason,
				       msg);
}

/*
 * Report an ending exit: `head` (one line) followed by the register dump.
 */
static void stopped_with_regs(struct kvm_vcpu *v,
			      enum smvmm_stop_reason reason, const char *head)
{
	char *msg = malloc(MSG_SIZE);
	size_t len;

	if (!msg) {
		stopped(v, reason, head);
		return;
	}
	len = (size_t)snprintf(msg, MSG_SIZE, "%s\n", head);
	if (len >= MSG_SIZE)
		len = MSG_SIZE - 1;
	kvm_format_regs(v, msg + len, MSG_SIZE - len);
	stopped(v, reason, msg);
	free(msg);
}

static const char *internal_suberror_name(uint32_t sub)
{
	switch (sub) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "simultaneous exceptions";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "exit during event delivery";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		return "unexpected exit reason";
	default:
		return "unknown suberror";
	}
}

/*
 * Read up to X86_MAX_INSN instruction bytes at the guest's CS:RIP from guest
 * RAM, translating each page through the guest page tables (KVM_TRANSLATE).
 * Returns the number of bytes read.
 */
static size_t read_insn_at_rip(struct kvm_vcpu *v, uint64_t *rip_out,
			       uint8_t *bytes)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint64_t lin;
	size_t got = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return 0;
	*rip_out = r.rip;
	/* In 64-bit mode the CS base is ignored (SDM Vol. 3 §3.4.4);
	 * otherwise linear = CS.base + EIP. */
	if ((s.efer & (1u << 10)) && s.cs.l)
		lin = r.rip;
	else
		lin = (s.cs.base + r.rip) & 0xffffffffull;

	while (got < X86_MAX_INSN) {
		struct kvm_translation t = { .linear_address = lin + got };
		size_t chunk = 4096 - ((lin + got) & 4095);
		size_t n;

		if (chunk > X86_MAX_INSN - got)
			chunk = X86_MAX_INSN - got;
		if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
			break;
		n = kvm_read_guest_phys(v->vm, t.physical_address,
					bytes + got, chunk);
		got += n;
		if (n < chunk)
			break;
	}
	return got;
}

static void report_internal_error(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t sub = run->internal.suberror;
	uint8_t bytes[X86_MAX_INSN];
	size_t nbytes = 0, pos;
	uint64_t rip = 0;
	const char *src = "";
	char head[512];

	if (sub == KVM_INTERNAL_ERROR_EMULATION && !v->vm->ignore_insn_bytes &&
	    run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags &
	     KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		struct kvm_regs r;

		nbytes = run->emulation_failure.insn_size;
		if (nbytes > X86_MAX_INSN)
			nbytes = X86_MAX_INSN;
		memcpy(bytes, run->emulation_failure.insn_bytes, nbytes);
		if (ioctl(v->fd, KVM_GET_REGS, &r) == 0)
			rip = r.rip;
	} else {
		nbytes = read_insn_at_rip(v, &rip, bytes);
		src = " (read from guest memory)";
	}

	pos = (size_t)snprintf(head, sizeof(head),
			       "KVM internal error: suberror %u (%s) at RIP 0x%" PRIx64,
			       sub, internal_suberror_name(sub), rip);
	if (nbytes) {
		pos += (size_t)snprintf(head + pos, sizeof(head) - pos,
					", instruction bytes%s:", src);
		for (size_t i = 0; i < nbytes && pos < sizeof(head); i++)
			pos += (size_t)snprintf(head + pos, sizeof(head) - pos,
						" %02x", bytes[i]);
	} else if (pos < sizeof(head)) {
		pos += (size_t)snprintf(head + pos, sizeof(head) - pos,
					", instruction bytes unavailable");
	}
	/* The raw data words help with the non-emulation suberrors (for VMX
	 * they hold the exit reason and vectoring info). */
	if (sub != KVM_INTERNAL_ERROR_EMULATION) {
		uint32_t nd = run->internal.ndata;

		if (nd > 16)
			nd = 16;
		for (uint32_t i = 0; i < nd && pos < sizeof(head); i++)
			pos += (size_t)snprintf(head + pos, sizeof(head) - pos,
						"%s0x%llx", i ? " " : ", data: ",
						run->internal.data[i]);
	}
	stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
}

/*
 * KVM_EXIT_IO: `count` repetitions of `size` bytes at run + data_offset (one
 * exit covers a whole REP INS/OUTS chunk, KVM API doc).
 */
static int handle_io(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t size = run->io.size, count = run->io.count;
	uint64_t off = run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + off;

	/* The page is KVM's, but a size/offset outside it would be a kernel
	 * bug we refuse to follow into a crash. */
	if ((size != 1 && size != 2 && size != 4) ||
	    off > v->vm->run_size || count > (v->vm->run_size - off) / size)
		return -EIO;
	for (uint64_t i = 0; i < count; i++) {
		if (v->vm->host.pio)
			v->vm->host.pio(v->vm->host.opaque, v->index,
					run->io.port, data + i * size,
					(uint32_t)size, is_write);
		else if (!is_write)
			memset(data + i * size, 0xff, size);
	}
	return 0;
}

static int handle_mmio(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len;

	if (len == 0 || len > sizeof(run->mmio.data))
		return -EIO;
	if (v->vm->host.mmio)
		v->vm->host.mmio(v->vm->host.opaque, v->index,
				 run->mmio.phys_addr, run->mmio.data, len,
				 run->mmio.is_write);
	else if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, len);
	return 0;
}

/* Drop a pending kick so that the next KVM_RUN does not return EINTR. */
static void drain_kick(void)
{
	sigset_t set;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, KVM_KICK_SIGNAL);
	while (sigtimedwait(&set, NULL, &zero) >= 0)
		;
}

/*
 * An IN or MMIO read exit is only finished when KVM_RUN is called again
 * (KVM API doc, KVM_RUN: "pending operations are completed" with
 * immediate_exit).  Do that before leaving, so registers read by get_regs()
 * after stop() are consistent and a later run() resumes correctly.
 */
static void complete_pending_io(struct kvm_vcpu *v, uint32_t last_exit)
{
	if (last_exit != KVM_EXIT_IO && last_exit != KVM_EXIT_MMIO)
		return;
	if (!v->vm->has_immediate_exit)
		return;
	v->run->immediate_exit = 1;
	while (ioctl(v->fd, KVM_RUN, 0) < 0 && errno == EAGAIN)
		;
	v->run->immediate_exit = 0;
}

void *kvm_vcpu_thread(void *arg)
{
	struct kvm_vcpu *v = arg;
	struct kvm_vm *vm = v->vm;
	struct kvm_run *run = v->run;
	uint32_t last_exit = KVM_EXIT_UNKNOWN;
	char head[256];

	for (;;) {
		if (atomic_load(&vm->stopping))
			break;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			int err = errno;

			if (err == EINTR) {
				/* A kick (or another signal): the stop flag
				 * decides.  The exit was not a guest exit. */
				drain_kick();
				last_exit = KVM_EXIT_INTR;
				continue;
			}
			if (err == EAGAIN)
				continue;
			snprintf(head, sizeof(head), "KVM_RUN failed: %s",
				 strerror(err));
			stopped_with_regs(v, SMVMM_STOP_ERROR, head);
			return NULL;
		}
		last_exit = run->exit_reason;

		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (handle_io(v) < 0) {
				snprintf(head, sizeof(head),
					 "KVM_EXIT_IO with bad geometry: size %u count %u offset %llu",
					 run->io.size, run->io.count,
					 run->io.data_offset);
				stopped(v, SMVMM_STOP_ERROR, head);
				return NULL;
			}
			break;
		case KVM_EXIT_MMIO:
			if (handle_mmio(v) < 0) {
				snprintf(head, sizeof(head),
					 "KVM_EXIT_MMIO with bad length %u at 0x%llx",
					 run->mmio.len, run->mmio.phys_addr);
				stopped(v, SMVMM_STOP_ERROR, head);
				return NULL;
			}
			break;
		case KVM_EXIT_HLT:
			/* With the in-kernel LAPIC, KVM waits for interrupts
			 * itself; an HLT exit only means "look again". */
		case KVM_EXIT_INTR:
		case KVM_EXIT_IRQ_WINDOW_OPEN:
			break;
		case KVM_EXIT_SHUTDOWN:
			stopped_with_regs(v, SMVMM_STOP_SHUTDOWN,
					  "guest triple fault (KVM_EXIT_SHUTDOWN)");
			return NULL;
		case KVM_EXIT_INTERNAL_ERROR:
			report_internal_error(v);
			return NULL;
		case KVM_EXIT_SYSTEM_EVENT:
			switch (run->system_event.type) {
			case KVM_SYSTEM_EVENT_SHUTDOWN:
				stopped(v, SMVMM_STOP_POWEROFF,
					"guest powered off (KVM_SYSTEM_EVENT_SHUTDOWN)");
				return NULL;
			case KVM_SYSTEM_EVENT_RESET:
				stopped(v, SMVMM_STOP_RESET,
					"guest requested reset (KVM_SYSTEM_EVENT_RESET)");
				return NULL;
			case KVM_SYSTEM_EVENT_CRASH:
				stopped_with_regs(v, SMVMM_STOP_INTERNAL,
						  "guest crashed (KVM_SYSTEM_EVENT_CRASH)");
				return NULL;
			default:
				snprintf(head, sizeof(head),
					 "unexpected KVM_EXIT_SYSTEM_EVENT type %u",
					 run->system_event.type);
				stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
				return NULL;
			}
		case KVM_EXIT_FAIL_ENTRY:
			snprintf(head, sizeof(head),
				 "KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x%llx on CPU %u",
				 run->fail_entry.hardware_entry_failure_reason,
				 run->fail_entry.cpu);
			stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
			return NULL;
		case KVM_EXIT_UNKNOWN:
			snprintf(head, sizeof(head),
				 "KVM_EXIT_UNKNOWN: hardware exit reason 0x%llx",
				 run->hw.hardware_exit_reason);
			stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
			return NULL;
		case KVM_EXIT_EXCEPTION:
			snprintf(head, sizeof(head),
				 "KVM_EXIT_EXCEPTION: exception %u error code 0x%x",
				 run->ex.exception, run->ex.error_code);
			stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
			return NULL;
		default:
			snprintf(head, sizeof(head),
				 "unhandled KVM exit reason %u",
				 run->exit_reason);
			stopped_with_regs(v, SMVMM_STOP_INTERNAL, head);
			return NULL;
		}
	}
	complete_pending_io(v, last_exit);
	return NULL;
}
