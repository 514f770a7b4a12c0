/* SPDX-License-Identifier: MIT */
/*
 * Plugin loader: finds smvmm-<type>.so (devices) or smvmm-backend-<name>.so
 * (backends), dlopen()s it, checks the ABI (plugin.h) and keeps host copies
 * of its tables.
 *
 * Search order for a bare type name:
 *   1. plugin_dir from the INI ([machine] plugin_dir), if set
 *   2. each directory in $SMVMM_PLUGIN_PATH (colon-separated)
 *   3. the directory of the running binary (/proc/self/exe)
 *   4. the install directory (SMVMM_PLUGIN_INSTALL_DIR, <libdir>/smvmm)
 *
 * Every error message names the file (or the directories searched) and the
 * reason: not found, the dlerror() text, no smvmm_plugin_v1 symbol, wrong
 * major (a smvmm_plugin_v<N> symbol with N != 1), newer minor, struct too
 * small, wrong kind, required op missing (names the op).
 */
#ifndef SMVMM_LOADER_H
#define SMVMM_LOADER_H

#include <stddef.h>

#include <smvmm/backend.h>
#include <smvmm/plugin.h>

struct smvmm_plugin {
	void *handle;
	char *path;                           /* malloc'd */
	struct smvmm_plugin_desc desc;        /* host copy, zero-extended */
	struct smvmm_device_ops dev_ops;      /* host copy (device plugins) */
	struct smvmm_backend_ops backend_ops; /* host copy (backends) */
};

struct loader_search {
	const char *plugin_dir; /* [machine] plugin_dir, or NULL */
	const char *exe_dir;    /* override for "next to the binary"; NULL =
				   loader_exe_dir() */
};

/*
 * loader_exe_dir: the directory of the running binary ("next to the
 * binary"), dirname of /proc/self/exe read on the first call and remembered;
 * NULL if unknown.  sandbox_prepare calls it before entering the jail's
 * mount namespace: there the link names the binary by its path in the
 * original namespace, which is wrong for a process started in a chroot.
 * Main thread.
 */
const char *loader_exe_dir(void);

/*
 * loader_file_name: "smvmm-<type>.so" for devices, "smvmm-backend-<type>.so"
 * for backends, into buf.  -ENAMETOOLONG; -EINVAL when type has a '/'
 * or is empty.
 */
int loader_file_name(const char *type, enum smvmm_plugin_kind kind, char *buf,
		     size_t len);

/*
 * loader_find: search for the plugin file as above (empty $SMVMM_PLUGIN_PATH
 * entries are skipped; a directory named like the file does not count; a
 * file that exists but cannot be loaded is still "found", so loader_open
 * can say why).  0 with its path in `path`; -ENOENT with err
 * "smvmm-<type>.so: device plugin not found in: <dir>, <dir>, ..." listing
 * every directory tried, in order; -EINVAL / -ENAMETOOLONG for a bad type.
 * Main thread (reads the environment).
 */
int loader_find(const char *type, enum smvmm_plugin_kind kind,
		const struct loader_search *s, char *path, size_t pathlen,
		char *err, size_t errlen);

/*
 * loader_open: dlopen `path` (RTLD_NOW | RTLD_LOCAL), validate, fill *p.
 * -ENOENT (or another -errno from stat), -ELIBBAD (dlopen failed / no
 * symbol), -EPROTO (major/minor/kind), -EINVAL (descriptor or ops table too
 * small, NULL/empty name, NULL ops, required op missing), -ENOMEM.  err gets
 * "<path>: <reason>".  The smallest accepted ops table ends at the last
 * required op; optional ops past a plugin's struct_size read as NULL.  On
 * error *p is zeroed.  Main thread (dlerror is not thread-safe).
 */
int loader_open(const char *path, enum smvmm_plugin_kind kind,
		struct smvmm_plugin *p, char *err, size_t errlen);

/* loader_load: loader_find + loader_open. */
int loader_load(const char *type, enum smvmm_plugin_kind kind,
		const struct loader_search *s, struct smvmm_plugin *p,
		char *err, size_t errlen);

/*
 * loader_close: dlclose and free; *p is zeroed.  Only after every instance
 * made with the plugin is destroyed (device_destroy / destroy_vm): those
 * join the plugin's threads, and no code of the plugin may run once it is
 * unloaded.  (The KVM backend is linked -z nodelete because its vCPU kick
 * signal handler stays installed for the process.)  Main thread.
 */
void loader_close(struct smvmm_plugin *p);

#endif
