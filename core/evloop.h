/* SPDX-License-Identifier: MIT */
/*
 * The I/O thread: one epoll loop that runs ioeventfd kicks, plugin fd watches
 * and timers (timerfds watched like any other fd).  Callbacks run on the loop
 * thread, one at a time, without the loop's lock held: a callback may call
 * evloop_watch/evloop_unwatch itself.
 *
 * Every watch gets a fresh id (epoll_event.data) from `generation`; an event
 * whose id is no longer in the watch list (unwatched, or re-watched, while
 * the event sat in an epoll_wait batch) is dropped, so a callback never runs
 * for a watch that was removed, even if the fd number was reused.
 */
#ifndef SMVMM_EVLOOP_H
#define SMVMM_EVLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef void (*evloop_cb)(void *opaque, int fd, uint32_t events);

struct evloop_watch;

struct evloop {
	int epfd;
	int wake_fd;            /* eventfd: stop / wake the loop */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;   /* guards the watch list and running_* */
	struct evloop_watch *watches;
	uint64_t generation;    /* id source: bumps on every (re)watch, so
				   events of removed watches are dropped */

	/* Appended: what the dispatcher is running, for unwatch to wait on. */
	pthread_cond_t idle;    /* signalled when a callback returns */
	uint64_t running_id;    /* watch id of the running callback, 0 = none */
	const void *running_owner;
	bool stop;              /* evloop_stop asked the thread to exit */
	bool has_dispatcher;    /* `dispatcher` is valid (atomic) */
	pthread_t dispatcher;   /* the loop thread, or run_once's caller */
};

/* evloop_init: create epoll + wake eventfd.  -errno.  Main thread. */
int evloop_init(struct evloop *l);

/*
 * evloop_watch: call cb(opaque, fd, events) when fd has any of `events`
 * (EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP; EPOLLERR/EPOLLHUP are always
 * reported), level-triggered.  Re-watching an fd replaces the entry (events,
 * cb, opaque and owner).  `owner` groups watches for evloop_unwatch_owner.
 * -EBADF (fd < 0), -EINVAL (cb NULL or no known event bit), -EPERM (fd does
 * not support epoll, e.g. a regular file), -ENOMEM.  Any thread.
 */
int evloop_watch(struct evloop *l, int fd, uint32_t events, evloop_cb cb,
		 void *opaque, const void *owner);

/*
 * evloop_unwatch: remove the watch on fd.  When called from another thread
 * than the loop's, waits until a callback for fd that is running has
 * returned; no callback for fd runs after it returns.  Called from a callback
 * on the loop thread (including fd's own callback) it does not wait: the
 * running callback finishes normally and none runs afterwards.  The caller
 * must not hold a lock the callback takes (it would wait for itself); unwatch
 * before close(fd).  -ENOENT.  Any thread.
 */
int evloop_unwatch(struct evloop *l, int fd);

/*
 * evloop_unwatch_nowait: remove the watch on fd without waiting for a
 * callback that is already running on the loop thread (no new one starts
 * after this returns).  For callers that hold a lock the callback takes and
 * re-check their own state under it (device.c).  -ENOENT.  Any thread.
 */
int evloop_unwatch_nowait(struct evloop *l, int fd);

/*
 * evloop_unwatch_owner: remove every watch registered with `owner`; off the
 * loop thread, also waits until no callback of that owner is running (even
 * one whose watch was removed with evloop_unwatch_nowait).  Any thread.
 */
void evloop_unwatch_owner(struct evloop *l, const void *owner);

/* evloop_start: run the loop on a new thread.  -errno. */
int evloop_start(struct evloop *l);

/*
 * evloop_run_once: wait up to timeout_ms (-1: forever) and dispatch; the
 * calling thread counts as the loop thread meanwhile.  Returns the number of
 * callbacks run, or -errno (-EBUSY when the loop thread is running).  For
 * tests and tools without a thread.
 */
int evloop_run_once(struct evloop *l, int timeout_ms);

/*
 * evloop_stop: stop and join the thread (no-op if not started).  Main
 * thread; not from a callback (the loop cannot join itself: it only gets
 * asked to stop then).
 */
void evloop_stop(struct evloop *l);

/* evloop_destroy: close fds and free watches; the loop must be stopped. */
void evloop_destroy(struct evloop *l);

/* evloop_in_loop_thread: true on the loop thread. */
bool evloop_in_loop_thread(const struct evloop *l);

#endif
