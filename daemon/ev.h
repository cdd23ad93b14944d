/*
 * ev: the one event loop of the daemon (epoll), in the manner of redis ae.c.
 *
 * File events have separate read and write callbacks.  Timers call back with
 * their data and return the next interval in milliseconds, or EV_TIMER_STOP
 * to be removed.  Before-sleep hooks run once per iteration just before the
 * loop blocks: that is where batched work (verdicts, sync frames, netlink
 * batches) is flushed.  No module owns a loop of its own and no callback may
 * block.
 *
 * Errors: functions returning int return 0 on success and -1 with errno set.
 * The loop owns nothing it is given: callers close their own fds.
 */
#ifndef UPLINKD_EV_H
#define UPLINKD_EV_H

#include <stdbool.h>
#include <stdint.h>

#define EV_TIMER_STOP (-1)

struct ev_loop;
struct ev_timer;

typedef void (*ev_fd_cb)(int fd, void *data);
typedef int64_t (*ev_timer_cb)(void *data);
typedef void (*ev_hook_cb)(void *data);

struct ev_loop *ev_create(void);
void ev_destroy(struct ev_loop *loop);

/* on_write may be NULL; write interest is off until ev_fd_want_write(). */
int ev_fd_add(struct ev_loop *loop, int fd, ev_fd_cb on_read, ev_fd_cb on_write,
    void *data);
int ev_fd_want_write(struct ev_loop *loop, int fd, bool want);
/* Read interest is on from ev_fd_add(); off, the fd's data waits in the
 * kernel (errors and hang-ups are still reported, to on_read). */
int ev_fd_want_read(struct ev_loop *loop, int fd, bool want);
/* Safe to call from inside any callback, including the fd's own. */
void ev_fd_del(struct ev_loop *loop, int fd);

/* Fires first after `after_ms`; returns NULL with errno ENOMEM on failure. */
struct ev_timer *ev_timer_add(struct ev_loop *loop, int64_t after_ms,
    ev_timer_cb cb, void *data);
/* Reschedule to fire `after_ms` from now. */
void ev_timer_rearm(struct ev_loop *loop, struct ev_timer *t, int64_t after_ms);
/* Safe from inside callbacks; NULL is a no-op. */
void ev_timer_del(struct ev_loop *loop, struct ev_timer *t);

int ev_hook_add(struct ev_loop *loop, ev_hook_cb cb, void *data);
/* Removes the hook added with the same cb and data; a no-op when there is
 * none.  Not from inside a hook. */
void ev_hook_del(struct ev_loop *loop, ev_hook_cb cb, void *data);
/* From a hook that has work left (a slice of a long job): this iteration
 * polls instead of blocking, so the next slice follows at once. */
void ev_no_sleep(struct ev_loop *loop);

/* Runs until ev_stop(); returns 0, or -1 if epoll_wait failed. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

/* Monotonic milliseconds, cached once per loop iteration. */
int64_t ev_now_ms(struct ev_loop *loop);
/* Monotonic time read fresh from the clock (microseconds). */
int64_t ev_clock_us(void);

#endif
