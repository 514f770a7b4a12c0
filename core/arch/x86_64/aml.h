/* SPDX-License-Identifier: MIT */
/*
 * A small AML encoder (ACPI 6.x §20 "ACPI Machine Language Specification")
 * for the DSDT: names, integers, strings, packages, buffers, scopes, devices
 * and resource templates (§6.4 resource data types).
 *
 * Errors are sticky: the first failure (-ENOMEM, -EINVAL for a bad name or
 * string, -E2BIG for a package longer than PkgLength can encode) is kept in
 * a->err and later calls do nothing; check it once at the end.
 * Internal to the x86 arch code; not thread-safe per buffer.
 */
#ifndef SMVMM_ARCH_X86_AML_H
#define SMVMM_ARCH_X86_AML_H

#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);

void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_u16(struct aml *a, uint16_t v);
void aml_u32(struct aml *a, uint32_t v);

/* Integer with the smallest encoding: ZeroOp, OneOp, Byte/Word/DWord/QWord. */
void aml_integer(struct aml *a, uint64_t v);
/* String: StringPrefix, ASCII 0x01-0x7f, NUL. */
void aml_string(struct aml *a, const char *s);
/*
 * NameString: optional '\' or '^'s, then 1..255 dot-separated segments of up
 * to 4 characters ([A-Z_] first, then [A-Z0-9_]), padded with '_'.
 */
void aml_namestring(struct aml *a, const char *path);
/* EisaId("PNP0501") as a DWord integer. */
void aml_eisaid(struct aml *a, const char *id);

/*
 * Package-length framing: begin returns a mark; end inserts the PkgLength
 * (1-4 bytes, §20.2.4) for everything written since the mark.
 */
size_t aml_pkg_begin(struct aml *a);
void aml_pkg_end(struct aml *a, size_t mark);

/* Name(path, <object written next>) */
void aml_name(struct aml *a, const char *path);
/* Scope(path) { ... } and Device(path) { ... }: call aml_pkg_end(mark) */
size_t aml_scope_begin(struct aml *a, const char *path);
size_t aml_device_begin(struct aml *a, const char *path);
/* Package(n) { ... }: write n objects, then aml_pkg_end(mark). */
size_t aml_package_begin(struct aml *a, uint8_t nelem);
/* Buffer() { bytes } */
void aml_buffer(struct aml *a, const uint8_t *p, size_t n);

/* Resource descriptors into a plain byte buffer (§6.4.2, §6.4.3). */
void aml_res_io16(struct aml *r, uint16_t min, uint16_t max, uint8_t align,
		  uint8_t len);
void aml_res_irq_noflags(struct aml *r, uint16_t mask);
void aml_res_mem32_fixed(struct aml *r, int rw, uint32_t base, uint32_t len);
/* Extended Interrupt: consumer, edge/level, active high/low, exclusive. */
void aml_res_ext_irq(struct aml *r, int edge, int active_low, uint32_t irq);
/* End tag with checksum 0 ("the checksum is treated as valid"), then emit
 * the template as Buffer() into `a`. */
void aml_resource_template(struct aml *a, struct aml *r);

#endif
