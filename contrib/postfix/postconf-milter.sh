#!/bin/sh
# postdesk: the milter's Postfix settings as `postconf -e` lines, for a
# Debian host (smtpd chrooted in /var/spool/postfix, the default).
# `postdesk setup-postfix` prints the same for the host it runs on (it reads
# master.cf and keeps your other milters); `--apply` runs them after a backup.
# Run as root.  Each line sets one value: nothing here can override a value
# you corrected later, as an appended main.cf fragment would.
set -e

# The socket is /var/spool/postfix/postdesk/milter.sock.  A chrooted smtpd
# (master.cf chroot column "y") resolves the path inside the chroot, so it is
# written relative to the queue directory.  Without a chroot, write
# unix:/var/spool/postfix/postdesk/milter.sock instead.
# With other milters (spam, virus, DKIM) list postdesk LAST:
#   smtpd_milters = inet:127.0.0.1:11332, unix:/postdesk/milter.sock
postconf -e 'smtpd_milters = unix:/postdesk/milter.sock'

# Not set here, on purpose:
# - milter_default_action: Postfix's default (3.7: tempfail) answers 4xx while
#   the milter is down, so senders retry and nothing goes unrecorded.  With
#   `accept`, record what was delivered meanwhile with `postdesk import`.
# - milter_protocol: the default, 6, lets the milter accept foreign mail at DATA.
# - non_smtpd_milters: locally submitted mail (cron, sendmail) is not support mail.
# - the milter timeouts: Postfix's defaults (connect 30s, command 30s,
#   content 300s) suit; keep [store] busy_timeout (10 s) well under 300 s.

# smtpd (user postfix) opens the 0660 socket through the postdesk group; it
# keeps the groups it started with until the reload.
adduser postfix postdesk
postfix reload
