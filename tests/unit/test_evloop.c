// SPDX-License-Identifier: MIT
/*
 * Unit tests for core/evloop.c: dispatch, replacement, the unwatch guarantee
 * (from another thread while callbacks run, and from inside a callback),
 * owners, stop/join.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"

static int new_efd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ck_assert_int_ge(fd, 0);
	return fd;
}

static void kick(int fd)
{
	uint64_t one = 1;

	ck_assert_int_eq(write(fd, &one, sizeof(one)), sizeof(one));
}

static void drain(int fd)
{
	uint64_t v;

	(void)!read(fd, &v, sizeof(v));
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

struct rec {
	struct evloop *l;
	int calls;
	int fd;
	uint32_t events;
	bool in_loop;
	int other_fd; /* unwatched from inside the callback, if >= 0 */
	bool drain;
};

static void rec_cb(void *opaque, int fd, uint32_t events)
{
	struct rec *r = opaque;

	r->fd = fd;
	r->events = events;
	r->in_loop = evloop_in_loop_thread(r->l);
	if (r->drain)
		drain(fd);
	/* Last: tests wait for `calls` and then read the fields above. */
	__atomic_add_fetch(&r->calls, 1, __ATOMIC_SEQ_CST);
}

START_TEST(watch_fires)
{
	struct evloop l;
	struct rec r = { .l = &l, .drain = true };
	int fd = new_efd();

	ck_assert_int_eq(evloop_init(&l), 0);
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, rec_cb, &r, NULL), 0);
	/* Nothing readable: times out with no callback. */
	ck_assert_int_eq(evloop_run_once(&l, 0), 0);
	ck_assert_int_eq(r.calls, 0);
	kick(fd);
	ck_assert_int_eq(evloop_run_once(&l, 1000), 1);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(r.fd, fd);
	ck_assert(r.events & EPOLLIN);
	ck_assert(r.in_loop);
	ck_assert(!evloop_in_loop_thread(&l));
	/* Drained: no second call. */
	ck_assert_int_eq(evloop_run_once(&l, 0), 0);
	ck_assert_int_eq(evloop_unwatch(&l, fd), 0);
	ck_assert_int_eq(evloop_unwatch(&l, fd), -ENOENT);
	kick(fd);
	ck_assert_int_eq(evloop_run_once(&l, 0), 0);
	ck_assert_int_eq(r.calls, 1);
	evloop_destroy(&l);
	close(fd);
}
END_TEST

START_TEST(watch_errors)
{
	struct evloop l;
	struct rec r = { .l = &l };
	char path[] = "/tmp/evloop-test-XXXXXX";
	int fd = new_efd(), file;

	ck_assert_int_eq(evloop_init(&l), 0);
	ck_assert_int_eq(evloop_watch(&l, -1, EPOLLIN, rec_cb, &r, NULL),
			 -EBADF);
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, NULL, &r, NULL),
			 -EINVAL);
	ck_assert_int_eq(evloop_watch(&l, fd, 0, rec_cb, &r, NULL), -EINVAL);
	/* Regular files cannot be polled with epoll. */
	file = mkstemp(path);
	ck_assert_int_ge(file, 0);
	unlink(path);
	ck_assert_int_eq(evloop_watch(&l, file, EPOLLIN, rec_cb, &r, NULL),
			 -EPERM);
	ck_assert_int_eq(evloop_unwatch(&l, file), -ENOENT);
	ck_assert_int_eq(evloop_unwatch_nowait(&l, 1234), -ENOENT);
	close(file);
	evloop_destroy(&l);
	close(fd);
}
END_TEST

START_TEST(rewatch_replaces)
{
	struct evloop l;
	struct rec r1 = { .l = &l, .drain = true }, r2 = { .l = &l, .drain = true };
	int fd = new_efd();

	ck_assert_int_eq(evloop_init(&l), 0);
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, rec_cb, &r1, NULL), 0);
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, rec_cb, &r2, NULL), 0);
	kick(fd);
	ck_assert_int_eq(evloop_run_once(&l, 1000), 1);
	ck_assert_int_eq(r1.calls, 0);
	ck_assert_int_eq(r2.calls, 1);
	/* Re-watch for EPOLLOUT only: an eventfd is always writable. */
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLOUT, rec_cb, &r1, NULL), 0);
	ck_assert_int_eq(evloop_run_once(&l, 1000), 1);
	ck_assert_int_eq(r1.calls, 1);
	ck_assert(r1.events & EPOLLOUT);
	ck_assert_int_eq(evloop_unwatch(&l, fd), 0);
	evloop_destroy(&l);
	close(fd);
}
END_TEST

/* Both fds readable in one batch; the first callback unwatches both. */
struct pair {
	struct evloop *l;
	int fd[2];
	int calls;
	int rc[2];
};

static void pair_cb(void *opaque, int fd, uint32_t events)
{
	struct pair *p = opaque;

	(void)fd;
	(void)events;
	if (p->calls++ == 0) {
		p->rc[0] = evloop_unwatch(p->l, p->fd[0]);
		p->rc[1] = evloop_unwatch(p->l, p->fd[1]);
	}
}

START_TEST(unwatch_inside_callback)
{
	struct evloop l;
	struct pair p = { .l = &l };

	ck_assert_int_eq(evloop_init(&l), 0);
	p.fd[0] = new_efd();
	p.fd[1] = new_efd();
	ck_assert_int_eq(evloop_watch(&l, p.fd[0], EPOLLIN, pair_cb, &p, NULL),
			 0);
	ck_assert_int_eq(evloop_watch(&l, p.fd[1], EPOLLIN, pair_cb, &p, NULL),
			 0);
	kick(p.fd[0]);
	kick(p.fd[1]);
	/*
	 * Neither fd is drained, so both are in the same epoll_wait batch;
	 * the second event is stale once the first callback unwatched it.
	 * Unwatching on the loop thread must not wait for itself.
	 */
	ck_assert_int_eq(evloop_run_once(&l, 1000), 1);
	ck_assert_int_eq(p.calls, 1);
	ck_assert_int_eq(p.rc[0], 0);
	ck_assert_int_eq(p.rc[1], 0);
	ck_assert_int_eq(evloop_run_once(&l, 0), 0);
	ck_assert_int_eq(p.calls, 1);
	evloop_destroy(&l);
	close(p.fd[0]);
	close(p.fd[1]);
}
END_TEST

/* A fd closed and replaced by a new watch with the same number from inside
 * a callback: the stale event of the old watch must not reach the new one. */
struct reuse {
	struct evloop *l;
	int fd_a, fd_b;
	int a_calls, b_calls, new_calls;
};

static void reuse_new_cb(void *opaque, int fd, uint32_t events)
{
	struct reuse *u = opaque;

	(void)fd;
	(void)events;
	u->new_calls++;
}

static void reuse_cb(void *opaque, int fd, uint32_t events)
{
	struct reuse *u = opaque;
	int other = fd == u->fd_a ? u->fd_b : u->fd_a;
	int nfd;

	(void)events;
	if (fd == u->fd_a)
		u->a_calls++;
	else
		u->b_calls++;
	if (u->a_calls + u->b_calls > 1)
		return;
	/* Unwatch and close the other fd, reopen: same number, new watch. */
	ck_assert_int_eq(evloop_unwatch(u->l, other), 0);
	close(other);
	nfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ck_assert_int_ge(nfd, 0);
	if (nfd != other) {
		ck_assert_int_eq(dup2(nfd, other), other);
		close(nfd);
	}
	ck_assert_int_eq(evloop_watch(u->l, other, EPOLLIN, reuse_new_cb, u,
				      NULL), 0);
}

START_TEST(stale_event_after_fd_reuse)
{
	struct evloop l;
	struct reuse u = { .l = &l };

	ck_assert_int_eq(evloop_init(&l), 0);
	u.fd_a = new_efd();
	u.fd_b = new_efd();
	ck_assert_int_eq(evloop_watch(&l, u.fd_a, EPOLLIN, reuse_cb, &u, NULL),
			 0);
	ck_assert_int_eq(evloop_watch(&l, u.fd_b, EPOLLIN, reuse_cb, &u, NULL),
			 0);
	kick(u.fd_a);
	kick(u.fd_b);
	ck_assert_int_eq(evloop_run_once(&l, 1000), 1);
	ck_assert_int_eq(u.a_calls + u.b_calls, 1);
	ck_assert_int_eq(u.new_calls, 0); /* the new eventfd is not readable */
	evloop_destroy(&l);
	close(u.fd_a);
	close(u.fd_b);
}
END_TEST

/* A slow callback on the loop thread, never draining its fd (level). */
struct slow {
	struct evloop *l;
	int in_cb;
	int calls;
};

static void slow_cb(void *opaque, int fd, uint32_t events)
{
	struct slow *s = opaque;

	(void)fd;
	(void)events;
	__atomic_store_n(&s->in_cb, 1, __ATOMIC_SEQ_CST);
	sleep_ms(2);
	__atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->in_cb, 0, __ATOMIC_SEQ_CST);
}

static void wait_calls(int *calls, int n)
{
	for (int i = 0; i < 5000 && __atomic_load_n(calls, __ATOMIC_SEQ_CST) < n;
	     i++)
		sleep_ms(1);
	ck_assert_int_ge(__atomic_load_n(calls, __ATOMIC_SEQ_CST), n);
}

START_TEST(unwatch_from_other_thread)
{
	struct evloop l;

	ck_assert_int_eq(evloop_init(&l), 0);
	ck_assert_int_eq(evloop_start(&l), 0);
	ck_assert_int_eq(evloop_run_once(&l, 0), -EBUSY);
	for (int round = 0; round < 20; round++) {
		struct slow s = { .l = &l };
		int fd = new_efd(), after;

		kick(fd);
		ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, slow_cb, &s,
					      NULL), 0);
		wait_calls(&s.calls, 2 + round % 3);
		/* The callback is very likely running right now. */
		ck_assert_int_eq(evloop_unwatch(&l, fd), 0);
		ck_assert_int_eq(__atomic_load_n(&s.in_cb, __ATOMIC_SEQ_CST), 0);
		after = __atomic_load_n(&s.calls, __ATOMIC_SEQ_CST);
		sleep_ms(10);
		ck_assert_int_eq(__atomic_load_n(&s.calls, __ATOMIC_SEQ_CST),
				 after);
		close(fd);
	}
	evloop_stop(&l);
	evloop_destroy(&l);
}
END_TEST

START_TEST(unwatch_owner_waits)
{
	struct evloop l;
	struct slow s1 = { .l = &l }, s2 = { .l = &l }, s3 = { .l = &l };
	int fd1 = new_efd(), fd2 = new_efd(), fd3 = new_efd();
	int owner_a, owner_b, c1, c2, c3;

	ck_assert_int_eq(evloop_init(&l), 0);
	kick(fd1);
	kick(fd2);
	kick(fd3);
	ck_assert_int_eq(evloop_watch(&l, fd1, EPOLLIN, slow_cb, &s1, &owner_a),
			 0);
	ck_assert_int_eq(evloop_watch(&l, fd2, EPOLLIN, slow_cb, &s2, &owner_a),
			 0);
	ck_assert_int_eq(evloop_watch(&l, fd3, EPOLLIN, slow_cb, &s3, &owner_b),
			 0);
	ck_assert_int_eq(evloop_start(&l), 0);
	wait_calls(&s1.calls, 2);
	wait_calls(&s2.calls, 2);
	/* nowait removal of fd2 first: unwatch_owner must still wait for a
	 * running callback of owner_a. */
	ck_assert_int_eq(evloop_unwatch_nowait(&l, fd2), 0);
	evloop_unwatch_owner(&l, &owner_a);
	ck_assert_int_eq(__atomic_load_n(&s1.in_cb, __ATOMIC_SEQ_CST), 0);
	ck_assert_int_eq(__atomic_load_n(&s2.in_cb, __ATOMIC_SEQ_CST), 0);
	c1 = __atomic_load_n(&s1.calls, __ATOMIC_SEQ_CST);
	c2 = __atomic_load_n(&s2.calls, __ATOMIC_SEQ_CST);
	c3 = __atomic_load_n(&s3.calls, __ATOMIC_SEQ_CST);
	sleep_ms(20);
	ck_assert_int_eq(__atomic_load_n(&s1.calls, __ATOMIC_SEQ_CST), c1);
	ck_assert_int_eq(__atomic_load_n(&s2.calls, __ATOMIC_SEQ_CST), c2);
	/* owner_b's watch keeps running. */
	wait_calls(&s3.calls, c3 + 1);
	ck_assert_int_eq(evloop_unwatch(&l, fd1), -ENOENT);
	ck_assert_int_eq(evloop_unwatch(&l, fd3), 0);
	evloop_stop(&l);
	evloop_destroy(&l);
	close(fd1);
	close(fd2);
	close(fd3);
}
END_TEST

/* Threaded loop: a callback unwatches itself; must not deadlock. */
struct self {
	struct evloop *l;
	int calls;
	int rc;
	int done_fd;
};

static void self_cb(void *opaque, int fd, uint32_t events)
{
	struct self *s = opaque;

	(void)events;
	__atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
	s->rc = evloop_unwatch(s->l, fd);
	kick(s->done_fd);
}

START_TEST(unwatch_self_on_loop_thread)
{
	struct evloop l;
	struct self s = { .l = &l };
	int fd = new_efd();

	s.done_fd = new_efd();
	ck_assert_int_eq(evloop_init(&l), 0);
	ck_assert_int_eq(evloop_start(&l), 0);
	kick(fd); /* never drained: level-triggered would loop forever */
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, self_cb, &s, NULL), 0);
	for (int i = 0; i < 5000; i++) {
		uint64_t v;

		if (read(s.done_fd, &v, sizeof(v)) == sizeof(v))
			break;
		sleep_ms(1);
	}
	sleep_ms(20);
	ck_assert_int_eq(__atomic_load_n(&s.calls, __ATOMIC_SEQ_CST), 1);
	ck_assert_int_eq(s.rc, 0);
	evloop_stop(&l);
	evloop_destroy(&l);
	close(fd);
	close(s.done_fd);
}
END_TEST

START_TEST(stop_join)
{
	struct evloop l;
	struct rec r = { .l = &l, .drain = true };
	int fd = new_efd();

	ck_assert_int_eq(evloop_init(&l), 0);
	evloop_stop(&l); /* not started: no-op */
	ck_assert_int_eq(evloop_start(&l), 0);
	ck_assert(l.running);
	ck_assert_int_eq(evloop_start(&l), -EBUSY);
	ck_assert_int_eq(evloop_watch(&l, fd, EPOLLIN, rec_cb, &r, NULL), 0);
	kick(fd);
	wait_calls(&r.calls, 1);
	ck_assert(r.in_loop);
	evloop_stop(&l);
	ck_assert(!l.running);
	evloop_stop(&l); /* twice: no-op */
	/* Stopped: events are not dispatched any more... */
	kick(fd);
	sleep_ms(10);
	ck_assert_int_eq(__atomic_load_n(&r.calls, __ATOMIC_SEQ_CST), 1);
	/* ...until the loop runs again (restart works). */
	ck_assert_int_eq(evloop_start(&l), 0);
	wait_calls(&r.calls, 2);
	evloop_stop(&l);
	/* Unwatch after stop does not wait for anything. */
	ck_assert_int_eq(evloop_unwatch(&l, fd), 0);
	evloop_destroy(&l);
	close(fd);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("evloop");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, watch_fires);
	tcase_add_test(tc, watch_errors);
	tcase_add_test(tc, rewatch_replaces);
	tcase_add_test(tc, unwatch_inside_callback);
	tcase_add_test(tc, stale_event_after_fd_reuse);
	tcase_add_test(tc, unwatch_from_other_thread);
	tcase_add_test(tc, unwatch_owner_waits);
	tcase_add_test(tc, unwatch_self_on_loop_thread);
	tcase_add_test(tc, stop_join);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
