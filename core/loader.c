// SPDX-License-Identifier: MIT
/*
 * Plugin loader: find, dlopen and validate device and backend plugins.
 *
 * A plugin file is untrusted in the sense that it may have been built for
 * another ABI: everything the descriptor says is checked before any of its
 * function pointers is used (plugin.h, "the loader rule" in
 * ARCHITECTURE.md): same major (the symbol name), minor <= host minor,
 * tables at least as large as the v1.0 fields the host relies on, each table
 * copied min(struct_size, sizeof) into a zeroed host copy.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"

#ifndef SMVMM_PLUGIN_INSTALL_DIR
#define SMVMM_PLUGIN_INSTALL_DIR "/usr/local/lib/smvmm"
#endif

/* Tried when smvmm_plugin_v1 is absent, to name the major a plugin targets. */
#define LOADER_MAX_PROBED_MAJOR 9

#define end_of(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* The descriptor fields of ABI 1.0: everything up to and including ops. */
#define DESC_MIN_SIZE end_of(struct smvmm_plugin_desc, ops)

struct required_op {
	const char *name;
	size_t offset;
};

#define REQ(type, op) { #op, offsetof(type, op) }

static const struct required_op device_required[] = {
	REQ(struct smvmm_device_ops, create),
	REQ(struct smvmm_device_ops, destroy),
	REQ(struct smvmm_device_ops, get_features),
	REQ(struct smvmm_device_ops, set_features),
	REQ(struct smvmm_device_ops, config_read),
	REQ(struct smvmm_device_ops, config_write),
	REQ(struct smvmm_device_ops, activate),
	REQ(struct smvmm_device_ops, queue_notify),
	REQ(struct smvmm_device_ops, reset),
};

static const struct required_op backend_required[] = {
	REQ(struct smvmm_backend_ops, create_vm),
	REQ(struct smvmm_backend_ops, destroy_vm),
	REQ(struct smvmm_backend_ops, add_memory),
	REQ(struct smvmm_backend_ops, set_regs),
	REQ(struct smvmm_backend_ops, get_regs),
	REQ(struct smvmm_backend_ops, run),
	REQ(struct smvmm_backend_ops, stop),
	REQ(struct smvmm_backend_ops, set_irq_line),
};

/*
 * The smallest ops table accepted: it must reach the last required op.
 * Optional ops after it are zero-filled when the plugin's table is shorter.
 */
#define DEVICE_OPS_MIN_SIZE end_of(struct smvmm_device_ops, reset)
#define BACKEND_OPS_MIN_SIZE end_of(struct smvmm_backend_ops, set_irq_line)

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case SMVMM_PLUGIN_DEVICE:
		return "device";
	case SMVMM_PLUGIN_BACKEND:
		return "backend";
	default:
		return NULL;
	}
}

int loader_file_name(const char *type, enum smvmm_plugin_kind kind, char *buf,
		     size_t len)
{
	const char *prefix;
	int n;

	if (!type || !*type || strchr(type, '/'))
		return -EINVAL;
	switch (kind) {
	case SMVMM_PLUGIN_DEVICE:
		prefix = "smvmm-";
		break;
	case SMVMM_PLUGIN_BACKEND:
		prefix = "smvmm-backend-";
		break;
	default:
		return -EINVAL;
	}
	n = snprintf(buf, len, "%s%s.so", prefix, type);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Append to err the way the not-found message lists directories. */
static void err_append(char *err, size_t errlen, size_t *used, const char *s)
{
	if (!err || !errlen || *used >= errlen - 1)
		return;
	int n = snprintf(err + *used, errlen - *used, "%s", s);
	if (n > 0)
		*used += (size_t)n;
	if (*used > errlen - 1)
		*used = errlen - 1;
}

/*
 * Try dir/name: 0 when it exists and is not a directory (if it cannot be
 * loaded, loader_open says why, which beats "not found"), else -ENOENT.
 */
static int try_dir(const char *dir, const char *name, char *path,
		   size_t pathlen, char *err, size_t errlen, size_t *used,
		   unsigned int *ntried)
{
	struct stat st;
	int n;

	if (!dir || !*dir)
		return -ENOENT;
	err_append(err, errlen, used, (*ntried)++ ? ", " : "");
	err_append(err, errlen, used, dir);
	n = snprintf(path, pathlen, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= pathlen)
		return -ENOENT;
	if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		return 0;
	return -ENOENT;
}

const char *loader_exe_dir(void)
{
	static char dir[PATH_MAX];
	static bool known;
	ssize_t n;
	char *slash;

	if (known)
		return dir[0] ? dir : NULL;
	known = true;
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n <= 0) {
		dir[0] = '\0';
		return NULL;
	}
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	if (!slash) {
		dir[0] = '\0';
		return NULL;
	}
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return dir;
}

int loader_find(const char *type, enum smvmm_plugin_kind kind,
		const struct loader_search *s, char *path, size_t pathlen,
		char *err, size_t errlen)
{
	char name[NAME_MAX + 1];
	size_t used = 0;
	unsigned int ntried = 0;
	int rc;

	rc = loader_file_name(type, kind, name, sizeof(name));
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "'%s': %s", type ? type : "",
				 rc == -ENAMETOOLONG
					 ? "plugin name too long"
					 : "not a valid plugin name");
		return rc;
	}
	if (err && errlen) {
		int n = snprintf(err, errlen, "%s: %s plugin not found in: ",
				 name, kind_name(kind));
		used = n < 0 ? 0 : (size_t)n;
		if (used > errlen - 1)
			used = errlen - 1;
	}

	/* 1. [machine] plugin_dir */
	if (s && try_dir(s->plugin_dir, name, path, pathlen, err, errlen,
			 &used, &ntried) == 0)
		return 0;

	/* 2. $SMVMM_PLUGIN_PATH, colon-separated, empty entries skipped */
	const char *env = getenv("SMVMM_PLUGIN_PATH");
	if (env && *env) {
		char *copy = strdup(env), *save = NULL;
		if (!copy) {
			if (err && errlen)
				snprintf(err, errlen, "%s: out of memory",
					 name);
			return -ENOMEM;
		}
		for (char *d = strtok_r(copy, ":", &save); d;
		     d = strtok_r(NULL, ":", &save)) {
			if (try_dir(d, name, path, pathlen, err, errlen, &used,
				    &ntried) == 0) {
				free(copy);
				return 0;
			}
		}
		free(copy);
	}

	/* 3. next to the binary */
	const char *ed = s && s->exe_dir ? s->exe_dir : loader_exe_dir();
	if (try_dir(ed, name, path, pathlen, err, errlen, &used, &ntried) == 0)
		return 0;

	/* 4. the install directory */
	if (try_dir(SMVMM_PLUGIN_INSTALL_DIR, name, path, pathlen, err, errlen,
		    &used, &ntried) == 0)
		return 0;

	if (pathlen)
		path[0] = '\0';
	return -ENOENT;
}

/* Look for smvmm_plugin_v<N> with another N, to explain a missing symbol. */
static int other_major(void *h)
{
	char sym[32];

	for (int major = 0; major <= LOADER_MAX_PROBED_MAJOR; major++) {
		if (major == SMVMM_PLUGIN_ABI_MAJOR)
			continue;
		snprintf(sym, sizeof(sym), "smvmm_plugin_v%d", major);
		if (dlsym(h, sym))
			return major;
	}
	return -1;
}

#define lerr(err, errlen, path, ...)                                      \
	do {                                                              \
		if ((err) && (errlen)) {                                  \
			int n_ = snprintf((err), (errlen), "%s: ", (path)); \
			if (n_ > 0 && (size_t)n_ < (errlen))               \
				snprintf((err) + n_, (errlen) - (size_t)n_, \
					 __VA_ARGS__);                    \
		}                                                         \
	} while (0)

static int check_ops(const void *ops, size_t min_size, size_t host_size,
		     void *copy, const struct required_op *req, size_t nreq,
		     const char *kname, const char *path, char *err,
		     size_t errlen)
{
	uint32_t size;

	memcpy(&size, ops, sizeof(size)); /* struct_size: first field */
	if (size < min_size) {
		lerr(err, errlen, path,
		     "%s ops struct_size %u too small (ABI 1.0 needs >= %zu)",
		     kname, size, min_size);
		return -EINVAL;
	}
	memset(copy, 0, host_size);
	memcpy(copy, ops, size < host_size ? size : host_size);
	for (size_t i = 0; i < nreq; i++) {
		void *fn;

		memcpy(&fn, (const char *)copy + req[i].offset, sizeof(fn));
		if (!fn) {
			lerr(err, errlen, path, "required %s op '%s' is NULL",
			     kname, req[i].name);
			return -EINVAL;
		}
	}
	return 0;
}

int loader_open(const char *path, enum smvmm_plugin_kind kind,
		struct smvmm_plugin *p, char *err, size_t errlen)
{
	const struct smvmm_plugin_desc *d;
	struct stat st;
	void *h;
	int rc;

	memset(p, 0, sizeof(*p));
	if (!kind_name(kind)) {
		lerr(err, errlen, path, "bad plugin kind %d requested", kind);
		return -EINVAL;
	}
	/* stat first: dlopen's message for a missing file is less clear */
	if (stat(path, &st) < 0) {
		rc = -errno;
		lerr(err, errlen, path, "%s", strerror(-rc));
		return rc;
	}

	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		size_t pl = strlen(path);

		/* glibc's text usually starts with "<path>: ": say it once */
		if (e && !strncmp(e, path, pl) && !strncmp(e + pl, ": ", 2))
			e += pl + 2;
		lerr(err, errlen, path, "cannot load: %s",
		     e ? e : "dlopen failed");
		return -ELIBBAD;
	}

	d = dlsym(h, SMVMM_PLUGIN_SYMBOL);
	if (!d) {
		int major = other_major(h);
		if (major >= 0) {
			lerr(err, errlen, path,
			     "built for plugin ABI major %d (exports "
			     "smvmm_plugin_v%d), this smvmm supports %d",
			     major, major, SMVMM_PLUGIN_ABI_MAJOR);
			rc = -EPROTO;
		} else {
			lerr(err, errlen, path,
			     "no %s symbol: not an smvmm plugin",
			     SMVMM_PLUGIN_SYMBOL);
			rc = -ELIBBAD;
		}
		goto err_close;
	}

	/* abi_major, abi_minor and struct_size are in every 1.x descriptor */
	if (d->abi_major != SMVMM_PLUGIN_ABI_MAJOR) {
		lerr(err, errlen, path,
		     "descriptor says ABI major %u but the symbol is %s",
		     d->abi_major, SMVMM_PLUGIN_SYMBOL);
		rc = -EPROTO;
		goto err_close;
	}
	if (d->abi_minor > SMVMM_PLUGIN_ABI_MINOR) {
		lerr(err, errlen, path, "plugin needs ABI %d.%u, host has %d.%d",
		     SMVMM_PLUGIN_ABI_MAJOR, d->abi_minor,
		     SMVMM_PLUGIN_ABI_MAJOR, SMVMM_PLUGIN_ABI_MINOR);
		rc = -EPROTO;
		goto err_close;
	}
	if (d->struct_size < DESC_MIN_SIZE) {
		lerr(err, errlen, path,
		     "descriptor struct_size %u too small (ABI 1.0 needs >= "
		     "%zu)",
		     d->struct_size, (size_t)DESC_MIN_SIZE);
		rc = -EINVAL;
		goto err_close;
	}
	memcpy(&p->desc, d,
	       d->struct_size < sizeof(p->desc) ? d->struct_size
						: sizeof(p->desc));

	if (p->desc.kind != (uint32_t)kind) {
		const char *k = kind_name(p->desc.kind);
		if (k)
			lerr(err, errlen, path,
			     "is a %s plugin, expected a %s plugin", k,
			     kind_name(kind));
		else
			lerr(err, errlen, path,
			     "unknown plugin kind %u, expected a %s plugin",
			     p->desc.kind, kind_name(kind));
		rc = -EPROTO;
		goto err_close;
	}
	if (!p->desc.name || !p->desc.name[0]) {
		lerr(err, errlen, path, "descriptor has no name");
		rc = -EINVAL;
		goto err_close;
	}
	if (!p->desc.ops) {
		lerr(err, errlen, path, "descriptor has no ops table");
		rc = -EINVAL;
		goto err_close;
	}

	if (kind == SMVMM_PLUGIN_DEVICE)
		rc = check_ops(p->desc.ops, DEVICE_OPS_MIN_SIZE,
			       sizeof(p->dev_ops), &p->dev_ops,
			       device_required,
			       sizeof(device_required) /
				       sizeof(device_required[0]),
			       "device", path, err, errlen);
	else
		rc = check_ops(p->desc.ops, BACKEND_OPS_MIN_SIZE,
			       sizeof(p->backend_ops), &p->backend_ops,
			       backend_required,
			       sizeof(backend_required) /
				       sizeof(backend_required[0]),
			       "backend", path, err, errlen);
	if (rc)
		goto err_close;

	p->path = strdup(path);
	if (!p->path) {
		lerr(err, errlen, path, "out of memory");
		rc = -ENOMEM;
		goto err_close;
	}
	p->handle = h;
	return 0;

err_close:
	dlclose(h);
	memset(p, 0, sizeof(*p));
	return rc;
}

int loader_load(const char *type, enum smvmm_plugin_kind kind,
		const struct loader_search *s, struct smvmm_plugin *p,
		char *err, size_t errlen)
{
	char path[PATH_MAX];
	int rc;

	memset(p, 0, sizeof(*p));
	rc = loader_find(type, kind, s, path, sizeof(path), err, errlen);
	if (rc)
		return rc;
	return loader_open(path, kind, p, err, errlen);
}

void loader_close(struct smvmm_plugin *p)
{
	if (p->handle)
		dlclose(p->handle);
	free(p->path);
	memset(p, 0, sizeof(*p));
}
