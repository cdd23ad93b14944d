/*
 * notify: tells the service manager where the daemon is in its life, for
 * a systemd unit of Type=notify (deploy/systemd/uplinkd.service.in).
 *
 * READY=1 goes out once the datapath (rules, NFQUEUE) and the control
 * socket are up, so that units ordered after uplinkd (keepalived, through
 * its drop-in) start only when this node can carry traffic and answer
 * keepalived's notify and alive checks.  A reload is bracketed by
 * RELOADING=1 and READY=1, so `systemctl reload` returns when the new
 * configuration is in place (or was refused), not when the signal was sent.
 *
 * Built without libsystemd (configure --without-systemd, or no
 * libsystemd-dev), every function does nothing.  Outside systemd
 * (NOTIFY_SOCKET unset) sd_notify() does nothing either, so the calls are
 * safe in the foreground and in the lab.  Errors are ignored on purpose:
 * the manager not hearing us is not a reason to stop forwarding.
 */
#ifndef UPLINKD_NOTIFY_H
#define UPLINKD_NOTIFY_H

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);

#endif
