/* SPDX-License-Identifier: MIT */
/*
 * fuzz_boot: kernel image bytes -> x86_boot_load_info
 * (core/arch/x86_64/boot.c): bzImage setup headers, ELF64 program headers,
 * PT_NOTE / XEN_ELFNOTE_PHYS32_ENTRY notes.  Kernel files are untrusted.
 *
 * Input: byte 0 bits 0-1 protocol (auto/linux/pvh), bit 2 with an initrd
 * (4 KiB file), bits 3-7 command line length / 128; the rest is the kernel
 * file (a memfd, opened through /proc/self/fd).
 *
 * Guest RAM: 64 MiB at gpa 0 from one heap buffer, so ASan reports any write
 * outside it.  On success: the kernel, its entry point and the initrd lie in
 * RAM.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmem.h"
#include "arch/x86_64/x86.h"

#define MEM (64ull << 20)

static uint8_t *ram;
static char initrd_path[64];

#define CHECK(c)                                                        \
	do {                                                            \
		if (!(c)) {                                             \
			fprintf(stderr, "invariant failed: %s (%s:%d)\n", \
				#c, __FILE__, __LINE__);                \
			abort();                                        \
		}                                                       \
	} while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static uint8_t ird[4096];
	int fd;

	(void)argc;
	(void)argv;
	ram = aligned_alloc(4096, MEM);
	if (!ram)
		abort();
	fd = memfd_create("fuzz-initrd", 0);
	memset(ird, 0xa5, sizeof(ird));
	if (fd < 0 || write(fd, ird, sizeof(ird)) != sizeof(ird))
		abort();
	snprintf(initrd_path, sizeof(initrd_path), "/proc/self/fd/%d", fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char cmdline[4200];
	struct smvmm_x86_regs regs;
	struct x86_boot_info info;
	struct x86_boot_cfg cfg;
	char kpath[64], err[512];
	struct gmem m;
	size_t clen;
	int fd, ret;

	if (!size)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.protocol = (enum boot_protocol)((data[0] & 3) % 3);
	cfg.initrd = (data[0] & 4) ? initrd_path : NULL;
	clen = (size_t)(data[0] >> 3) * 128 + (data[0] >> 3);
	memset(cmdline, 'c', clen);
	cmdline[clen] = 0;
	cfg.cmdline = cmdline;
	cfg.vcpus = 1;
	cfg.mem_size = MEM;
	data++;
	size--;

	fd = memfd_create("fuzz-kernel", 0);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", fd);
	cfg.kernel = kpath;

	gmem_init(&m);
	CHECK(gmem_add_mapping(&m, 0, MEM, ram, -1, 0) >= 0);
	memset(&regs, 0, sizeof(regs));
	ret = x86_boot_load_info(&m, &cfg, &regs, &info, err, sizeof(err));
	CHECK(ret <= 0);
	if (ret) {
		CHECK(err[0]);
	} else {
		CHECK(info.kernel_end > info.kernel_addr);
		CHECK(gmem_is_ram(&m, info.kernel_addr,
				  info.kernel_end - info.kernel_addr));
		CHECK(gmem_is_ram(&m, info.entry, 1));
		CHECK(info.kernel_addr >= (1u << 20));
		if (info.initrd_addr)
			CHECK(gmem_is_ram(&m, info.initrd_addr,
					  info.initrd_size));
		CHECK(!info.initrd_addr ||
		      info.initrd_addr >= info.kernel_end ||
		      info.initrd_addr + info.initrd_size <= info.kernel_addr);
	}
	gmem_destroy(&m);
	close(fd);
	return 0;
}
