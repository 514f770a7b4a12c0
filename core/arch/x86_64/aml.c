// SPDX-License-Identifier: MIT
/*
 * AML encoder, ACPI 6.x §20.  See aml.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aml.h"

/* AML opcodes (§20.3, §20.2.3) */
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after ExtOpPrefix */
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_ROOT_CHAR '\\'
#define AML_PARENT_PREFIX_CHAR '^'

#define AML_PKGLEN_MAX ((1u << 28) - 1)

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

static int aml_reserve(struct aml *a, size_t n)
{
	size_t cap;
	uint8_t *nb;

	if (a->err)
		return a->err;
	if (n > SIZE_MAX / 4 - a->len) {
		a->err = -E2BIG;
		return a->err;
	}
	if (a->len + n <= a->cap)
		return 0;
	cap = a->cap ? a->cap : 256;
	while (cap < a->len + n)
		cap *= 2;
	nb = realloc(a->buf, cap);
	if (!nb) {
		a->err = -ENOMEM;
		return a->err;
	}
	a->buf = nb;
	a->cap = cap;
	return 0;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (aml_reserve(a, n))
		return;
	if (n)
		memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

void aml_u16(struct aml *a, uint16_t v)
{
	uint8_t b[2] = { v & 0xff, v >> 8 };

	aml_bytes(a, b, 2);
}

void aml_u32(struct aml *a, uint32_t v)
{
	uint8_t b[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };

	aml_bytes(a, b, 4);
}

void aml_integer(struct aml *a, uint64_t v)
{
	/* §20.2.3 ComputationalData: the smallest encoding that holds v. */
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_byte(a, v);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_u16(a, v);
	} else if (v <= 0xffffffff) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_u32(a, v);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_u32(a, v & 0xffffffff);
		aml_u32(a, v >> 32);
	}
}

void aml_string(struct aml *a, const char *s)
{
	/* §20.2.3 String := StringPrefix AsciiCharList NullChar, 0x01-0x7f */
	for (const char *c = s; *c; c++) {
		if ((unsigned char)*c > 0x7f) {
			if (!a->err)
				a->err = -EINVAL;
			return;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int name_seg_ok(const char *s, size_t n)
{
	if (n == 0 || n > 4)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '_' || (c >= 'A' && c <= 'Z'))
			continue;
		if (i > 0 && c >= '0' && c <= '9')
			continue;
		return 0;
	}
	return 1;
}

void aml_namestring(struct aml *a, const char *path)
{
	const char *p = path, *seg;
	size_t nseg = 0;
	uint8_t segs[255][4];

	/* §20.2.2 NameString := RootChar NamePath | PrefixPath NamePath */
	if (*p == AML_ROOT_CHAR) {
		aml_byte(a, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == AML_PARENT_PREFIX_CHAR) {
			aml_byte(a, AML_PARENT_PREFIX_CHAR);
			p++;
		}
	}
	if (!*p) {
		aml_byte(a, 0x00); /* NullName */
		return;
	}
	for (seg = p;; seg = p + 1) {
		size_t n;

		p = strchr(seg, '.');
		n = p ? (size_t)(p - seg) : strlen(seg);
		if (!name_seg_ok(seg, n) || nseg == 255) {
			if (!a->err)
				a->err = -EINVAL;
			return;
		}
		memset(segs[nseg], '_', 4);
		memcpy(segs[nseg], seg, n);
		nseg++;
		if (!p)
			break;
	}
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, nseg);
	}
	aml_bytes(a, segs, nseg * 4);
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v;
	uint16_t prod = 0;

	/*
	 * §19.6.35 EISAID: three letters of 5 bits ('A' = 1) and four hex
	 * digits, stored big-endian in a DWord.
	 */
	if (strlen(id) != 7) {
		if (!a->err)
			a->err = -EINVAL;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			if (!a->err)
				a->err = -EINVAL;
			return;
		}
	}
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else {
			if (!a->err)
				a->err = -EINVAL;
			return;
		}
		prod = (prod << 4) | d;
	}
	v = ((uint32_t)(id[0] - 0x40) << 26) | ((uint32_t)(id[1] - 0x40) << 21) |
	    ((uint32_t)(id[2] - 0x40) << 16) | prod;
	aml_byte(a, AML_DWORD_PREFIX);
	aml_u32(a, __builtin_bswap32(v));
}

size_t aml_pkg_begin(struct aml *a)
{
	return a->len;
}

void aml_pkg_end(struct aml *a, size_t mark)
{
	size_t body, total;
	uint8_t enc[4];
	unsigned nb;

	if (a->err || mark > a->len)
		return;
	body = a->len - mark;
	/*
	 * §20.2.4 PkgLength counts itself.  One byte holds up to 63; longer
	 * lengths put the byte count - 1 in bits 7:6 of the lead byte, the low
	 * 4 bits of the length in bits 3:0, and the rest in following bytes.
	 */
	if (body + 1 <= 0x3f) {
		nb = 1;
		total = body + 1;
		enc[0] = total;
	} else {
		for (nb = 2; nb <= 4; nb++) {
			total = body + nb;
			if (total < (1u << (4 + 8 * (nb - 1))))
				break;
		}
		if (nb > 4 || total > AML_PKGLEN_MAX) {
			a->err = -E2BIG;
			return;
		}
		enc[0] = ((nb - 1) << 6) | (total & 0x0f);
		for (unsigned i = 1; i < nb; i++)
			enc[i] = (total >> (4 + 8 * (i - 1))) & 0xff;
	}
	if (aml_reserve(a, nb))
		return;
	memmove(a->buf + mark + nb, a->buf + mark, body);
	memcpy(a->buf + mark, enc, nb);
	a->len += nb;
}

void aml_name(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_SCOPE_OP);
	mark = aml_pkg_begin(a);
	aml_namestring(a, path);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *path)
{
	size_t mark;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	mark = aml_pkg_begin(a);
	aml_namestring(a, path);
	return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t nelem)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE_OP);
	mark = aml_pkg_begin(a);
	aml_byte(a, nelem);
	return mark;
}

void aml_buffer(struct aml *a, const uint8_t *p, size_t n)
{
	size_t mark;

	aml_byte(a, AML_BUFFER_OP);
	mark = aml_pkg_begin(a);
	aml_integer(a, n);
	aml_bytes(a, p, n);
	aml_pkg_end(a, mark);
}

void aml_res_io16(struct aml *r, uint16_t min, uint16_t max, uint8_t align,
		  uint8_t len)
{
	/* §6.4.2.5 I/O Port Descriptor: small item 0x08, length 7 */
	aml_byte(r, 0x47);
	aml_byte(r, 0x01); /* decodes 16-bit addresses */
	aml_u16(r, min);
	aml_u16(r, max);
	aml_byte(r, align);
	aml_byte(r, len);
}

void aml_res_irq_noflags(struct aml *r, uint16_t mask)
{
	/* §6.4.2.1 IRQ Descriptor, length 2: edge, active high, exclusive */
	aml_byte(r, 0x22);
	aml_u16(r, mask);
}

void aml_res_mem32_fixed(struct aml *r, int rw, uint32_t base, uint32_t len)
{
	/* §6.4.3.4 32-Bit Fixed Memory Range Descriptor: large item 0x06 */
	aml_byte(r, 0x86);
	aml_u16(r, 9);
	aml_byte(r, rw ? 1 : 0);
	aml_u32(r, base);
	aml_u32(r, len);
}

void aml_res_ext_irq(struct aml *r, int edge, int active_low, uint32_t irq)
{
	/*
	 * §6.4.3.6 Extended Interrupt Descriptor: large item 0x09; flags bit 0
	 * consumer, bit 1 edge, bit 2 active low, bit 3 shared (0: exclusive);
	 * one interrupt, no resource source.
	 */
	aml_byte(r, 0x89);
	aml_u16(r, 6);
	aml_byte(r, 0x01 | (edge ? 0x02 : 0) | (active_low ? 0x04 : 0));
	aml_byte(r, 1);
	aml_u32(r, irq);
}

void aml_resource_template(struct aml *a, struct aml *r)
{
	/* §6.4.2.9 End Tag: 0x79, checksum 0 */
	aml_byte(r, 0x79);
	aml_byte(r, 0x00);
	if (r->err) {
		if (!a->err)
			a->err = r->err;
		return;
	}
	aml_buffer(a, r->buf, r->len);
}
