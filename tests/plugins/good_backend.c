// SPDX-License-Identifier: MIT
/*
 * Test plugin: a complete, valid ABI 1.0 backend (name "good").  With
 * TP_NO_SET_IRQ_LINE defined (backend_no_irq_line.c) the required op
 * set_irq_line is NULL.
 */
#include <errno.h>
#include <smvmm/backend.h>

static int t_create_vm(const struct smvmm_backend_host *host,
		       const struct smvmm_vm_config *cfg, void **vm,
		       char **err_msg)
{
	(void)host;
	(void)cfg;
	(void)vm;
	(void)err_msg;
	return -ENODEV;
}

static void t_destroy_vm(void *vm)
{
	(void)vm;
}

static int t_add_memory(void *vm, uint32_t slot, uint64_t gpa, uint64_t size,
			void *hva, int fd, uint64_t fd_offset)
{
	(void)vm;
	(void)slot;
	(void)gpa;
	(void)size;
	(void)hva;
	(void)fd;
	(void)fd_offset;
	return -ENOSYS;
}

static int t_set_regs(void *vm, uint32_t vcpu, const struct smvmm_x86_regs *r)
{
	(void)vm;
	(void)vcpu;
	(void)r;
	return -ENOSYS;
}

static int t_get_regs(void *vm, uint32_t vcpu, struct smvmm_x86_regs *r)
{
	(void)vm;
	(void)vcpu;
	(void)r;
	return -ENOSYS;
}

static int t_run(void *vm)
{
	(void)vm;
	return -ENOSYS;
}

static void t_stop(void *vm)
{
	(void)vm;
}

__attribute__((unused)) static int t_set_irq_line(void *vm, uint32_t gsi,
						  int level)
{
	(void)vm;
	(void)gsi;
	(void)level;
	return -ENOSYS;
}

static const struct smvmm_backend_ops ops = {
	.struct_size = sizeof(struct smvmm_backend_ops),
	.create_vm = t_create_vm,
	.destroy_vm = t_destroy_vm,
	.add_memory = t_add_memory,
	.set_regs = t_set_regs,
	.get_regs = t_get_regs,
	.run = t_run,
	.stop = t_stop,
#ifndef TP_NO_SET_IRQ_LINE
	.set_irq_line = t_set_irq_line,
#endif
};

SMVMM_PLUGIN_EXPORT const struct smvmm_plugin_desc smvmm_plugin_v1 = {
	.abi_major = SMVMM_PLUGIN_ABI_MAJOR,
	.abi_minor = SMVMM_PLUGIN_ABI_MINOR,
	.struct_size = sizeof(struct smvmm_plugin_desc),
	.kind = SMVMM_PLUGIN_BACKEND,
	.name = "good",
	.version = "0.1",
	.description = "loader test backend",
	.config_keys = NULL,
	.ops = &ops,
};
