/* SPDX-License-Identifier: MIT */
/*
 * serial_log: the console's output file, with optional size-based rotation
 * ([console] serial_max_size / serial_max_files, machine.h), in the manner
 * of Docker's json-file log driver (max-size, max-file):
 *
 *   - the file is opened O_APPEND (created 0644 if missing); its current
 *     size counts towards the limit;
 *   - when a byte would make it exceed max_size, the file is rotated
 *     first: with max_files = N > 1, <file>.N-2 .. <file>.1 become
 *     <file>.N-1 .. <file>.2, <file> becomes <file>.1 (the oldest is
 *     overwritten) and a new empty <file> is created; with N = 1 the file
 *     is truncated and written from its start;
 *   - every name is resolved through a directory fd opened at start-up, so
 *     rotation keeps working after the process chroots or its working
 *     directory changes, and never follows a symlink planted in place of a
 *     rotated name (renameat replaces it; the new file is opened
 *     O_NOFOLLOW).
 *
 * Threads: open/close on the main thread; serial_log_rotate is called by
 * the UART (uart8250_set_rotation) on the vCPU thread doing the write,
 * under the UART lock.
 */
#ifndef SMVMM_SERIAL_LOG_H
#define SMVMM_SERIAL_LOG_H

#include <stddef.h>
#include <stdint.h>

struct serial_log;

/*
 * serial_log_open: open `path` for appending; max_size 0 = no limit (then
 * max_files is ignored), else 1 <= max_files <= 100.  0, or a negative
 * errno with "<path>: <reason>" in err.
 */
int serial_log_open(struct serial_log **out, const char *path,
		    uint64_t max_size, unsigned int max_files, char *err,
		    size_t errlen);

/* The fd to write to now, and the bytes already in that file. */
int serial_log_fd(const struct serial_log *l);
uint64_t serial_log_size(const struct serial_log *l);
uint64_t serial_log_max_size(const struct serial_log *l);

/*
 * serial_log_rotate: rotate as described above and return the new fd
 * (the old one is closed), or -errno if no file could be opened (output is
 * then dropped; the reason is logged once on stderr).  `opaque` is the
 * struct serial_log.
 */
int serial_log_rotate(void *opaque);

/* serial_log_close: close the fds and free; NULL is a no-op. */
void serial_log_close(struct serial_log *l);

#endif
