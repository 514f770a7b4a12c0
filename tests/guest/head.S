/* SPDX-License-Identifier: MIT */
/*
 * Probe guest entry points.
 *
 * Image layout (probe.ld): the image starts at _start = 0x1000000 (16 MiB)
 * with .head.text; the Linux 64-bit entry is at _start + 0x200, which is
 * both the ELF e_entry and the bzImage 64-bit entry (Linux boot protocol:
 * "the 64-bit entry point is at offset 0x200 of the protected-mode kernel").
 * The PVH 32-bit entry is named by the Xen ELF note at the end of this file.
 *
 * Segments: our GDT has 0x08 = 32-bit code, 0x10 = 64-bit code, 0x18 = data,
 * matching Linux's __BOOT_CS/__BOOT_DS for the 64-bit entry.
 */
#define BOOT_CS32 0x08
#define BOOT_CS64 0x10
#define BOOT_DS 0x18

#define X86_CR0_PE 0x00000001
#define X86_CR0_PG 0x80000000
#define X86_CR4_PAE 0x00000020
#define MSR_EFER 0xc0000080
#define EFER_LME 0x00000100

	.section .head.text, "ax"
	.globl _start
_start:
	/* 0x000..0x1ff: the GDT and its descriptor; nothing executes here. */
	.balign 16
gdt:
	.quad 0x0000000000000000
	.quad 0x00cf9a000000ffff	/* 0x08: code, 32-bit, flat */
	.quad 0x00af9a000000ffff	/* 0x10: code, 64-bit (L=1) */
	.quad 0x00cf92000000ffff	/* 0x18: data, flat */
gdt_end:
	.balign 8
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt			/* 32-bit lgdt reads the low 4 bytes */

	.org 0x200, 0xcc
	.code64
	.globl linux64_entry
linux64_entry:
	/*
	 * Linux 64-bit boot protocol: long mode, paging on with an identity
	 * map covering us and boot_params, RSI = boot_params, IF = 0.  There
	 * is no stack.
	 */
	cli
	cld
	movq	%rsi, %r15

	/*
	 * A bzImage's protected-mode part may be loaded anywhere (code32_start
	 * or pref_address); we are linked at _start, so move ourselves there
	 * if needed.  Only the file part (up to _edata) needs copying.
	 */
	leaq	_start(%rip), %rsi	/* where we run */
	movq	$_start, %rdi		/* where we are linked */
	cmpq	%rsi, %rdi
	je	.Lat_home
	movq	$_edata, %rcx
	subq	$_start, %rcx
	cmpq	%rsi, %rdi
	jb	.Lcopy_fwd
	/* dst above src: copy backwards so an overlap is safe. */
	leaq	-1(%rsi, %rcx), %rsi
	leaq	-1(%rdi, %rcx), %rdi
	std
	rep movsb
	cld
	jmp	.Lcopied
.Lcopy_fwd:
	rep movsb
.Lcopied:
	movq	$.Lat_home, %rax
	jmp	*%rax
.Lat_home:
	movq	$boot_stack_top, %rsp
	lgdt	gdt_desc(%rip)
	leaq	.Lreload_cs(%rip), %rax
	pushq	$BOOT_CS64
	pushq	%rax
	lretq
.Lreload_cs:
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	movq	%r15, %rdi
	call	probe_start		/* boot.c; does not return */
.Lhang:
	cli
	hlt
	jmp	.Lhang

	/* ---- PVH entry ---- */
	.code32
	.globl pvh_entry
pvh_entry:
	/*
	 * PVH boot ABI (xen docs/misc/pvh.pandoc): 32-bit protected mode,
	 * paging off, flat CS/DS, EBX = hvm_start_info, no stack.
	 */
	cli
	cld
	movl	%ebx, %esi
	lgdt	gdt_desc
	ljmp	$BOOT_CS32, $.Lpvh_cs
.Lpvh_cs:
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	movl	$boot_stack_top, %esp

	/* Identity map 4 GiB with 2 MiB pages: PML4, PDPT, 4 PDs. */
	movl	$pvh_pgtable, %edi
	movl	$(6 * 4096 / 4), %ecx
	xorl	%eax, %eax
	rep stosl
	movl	$(pvh_pgtable + 0x1000 + 3), pvh_pgtable	/* PML4[0] */
	movl	$(pvh_pgtable + 0x1000), %edi			/* PDPT */
	movl	$(pvh_pgtable + 0x2000 + 3), %eax
	movl	$4, %ecx
1:	movl	%eax, (%edi)
	addl	$0x1000, %eax
	addl	$8, %edi
	loop	1b
	movl	$(pvh_pgtable + 0x2000), %edi			/* PDs */
	movl	$0x83, %eax		/* P | RW | PS */
	xorl	%ecx, %ecx
2:	movl	%eax, %edx
	cmpl	$1536, %ecx		/* top GiB: MMIO, PCD | PWT */
	jb	3f
	orl	$0x18, %edx
3:	movl	%edx, (%edi, %ecx, 8)
	addl	$0x200000, %eax
	incl	%ecx
	cmpl	$2048, %ecx
	jb	2b

	movl	%cr4, %eax
	orl	$X86_CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$pvh_pgtable, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(X86_CR0_PG | X86_CR0_PE), %eax
	movl	%eax, %cr0
	ljmp	$BOOT_CS64, $.Lpvh_long

	.code64
.Lpvh_long:
	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movq	$boot_stack_top, %rsp
	movl	%esi, %edi		/* zero-extends */
	call	pvh_convert		/* boot.c: returns a boot_params */
	movq	%rax, %rsi
	jmp	linux64_entry

	/* ---- interrupt and exception stubs: 256 x 16 bytes ---- */
	.text
	.balign 16
	.globl irq_stubs
irq_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	/* The CPU pushes an error code for these; push a dummy for the rest
	 * so the frame is always the same (SDM Vol. 3 §6.13). */
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq	$0
	.endif
	pushq	$vec
	jmp	irq_common
	.set vec, vec + 1
	.endr

irq_common:
	/* Caller-saved registers; 9 pushes keep the ABI's 16-byte alignment
	 * (the CPU aligned RSP before its 5-quadword frame + 2 of ours). */
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	movq	%rsp, %rdi
	cld
	call	irq_dispatch		/* irq.c */
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$16, %rsp		/* vector, error code */
	iretq

	/*
	 * PVH ELF note (Xen public/elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY = 18).
	 * The descriptor is 8 bytes like Linux's (_ASM_PTR); readers that take
	 * 4 bytes see the same little-endian value.
	 */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4		/* namesz */
	.long	8		/* descsz */
	.long	18		/* type */
	.asciz	"Xen"
	.balign 4
	.quad	pvh_entry
	.balign 4

	/* Boot stack and PVH page tables: not in .bss (head.S and
	 * probe_start use them while .bss is cleared). */
	.section .noinit, "aw", @nobits
	.balign 4096
pvh_pgtable:
	.skip	6 * 4096
	.balign 16
boot_stack:
	.skip	32768
	.globl boot_stack_top
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
