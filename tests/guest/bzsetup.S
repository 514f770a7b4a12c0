/* SPDX-License-Identifier: MIT */
/*
 * bzImage setup area for the probe (Linux Documentation/arch/x86/boot.rst):
 * 1 KiB = the boot sector plus setup_sects = 1 sector, holding a real
 * setup header, version 2.15.  There is no real-mode code: a loader must
 * use the 64-bit entry (XLF_KERNEL_64), at offset 0x200 of the
 * protected-mode part, which follows this area in the file.
 */
#define SETUP_SECTS 1

	.section .bzsetup, "a"
	.code16
bzsetup:
	.org 0x1f1
	.byte	SETUP_SECTS		/* 0x1f1 setup_sects */
	.word	0			/* 0x1f2 root_flags */
	.long	probe_syssize		/* 0x1f4 syssize (16-byte units) */
	.word	0			/* 0x1f8 ram_size (obsolete) */
	.word	0xffff			/* 0x1fa vid_mode: normal */
	.word	0			/* 0x1fc root_dev */
	.word	0xaa55			/* 0x1fe boot_flag */
	/* 0x200: jump over the header; real mode is not supported, so a
	 * loader that ignores XLF_KERNEL_64 lands in a halt loop. */
	.byte	0xeb, .Lrm_hang - (bzsetup + 0x202)/* jmp short */
	.ascii	"HdrS"			/* 0x202 header */
	.word	0x020f			/* 0x206 version 2.15 */
	.long	0			/* 0x208 realmode_swtch */
	.word	0			/* 0x20c start_sys_seg (obsolete) */
	.word	0			/* 0x20e kernel_version: none */
	.byte	0			/* 0x210 type_of_loader (loader) */
	.byte	0x01			/* 0x211 loadflags: LOADED_HIGH */
	.word	0			/* 0x212 setup_move_size */
	.long	0x100000		/* 0x214 code32_start */
	.long	0			/* 0x218 ramdisk_image */
	.long	0			/* 0x21c ramdisk_size */
	.long	0			/* 0x220 bootsect_kludge */
	.word	0			/* 0x224 heap_end_ptr */
	.byte	0			/* 0x226 ext_loader_ver */
	.byte	0			/* 0x227 ext_loader_type */
	.long	0			/* 0x228 cmd_line_ptr (loader) */
	.long	0x7fffffff		/* 0x22c initrd_addr_max */
	.long	0x200000		/* 0x230 kernel_alignment */
	.byte	0			/* 0x234 relocatable_kernel: no */
	.byte	21			/* 0x235 min_alignment: 2 MiB */
	.word	0x0001			/* 0x236 xloadflags: XLF_KERNEL_64 */
	.long	2047			/* 0x238 cmdline_size */
	.long	0			/* 0x23c hardware_subarch: PC */
	.quad	0			/* 0x240 hardware_subarch_data */
	.long	0			/* 0x248 payload_offset */
	.long	0			/* 0x24c payload_length */
	.quad	0			/* 0x250 setup_data */
	.quad	0x1000000		/* 0x258 pref_address */
	.long	probe_init_size		/* 0x260 init_size */
	.long	0			/* 0x264 handover_offset */
	.long	0			/* 0x268 kernel_info_offset */
.Lrm_hang:
	cli
	hlt
	jmp	.Lrm_hang
	.org 0x400, 0
