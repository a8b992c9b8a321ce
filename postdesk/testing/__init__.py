"""Test helpers that ship with postdesk, as Mailman's and aiosmtpd's do.

Used by postdesk's own tests, ``bench/`` and ``scripts/demo.py``; importing
``postdesk`` never imports them.  ``postdesk.testing.smtp`` (the SMTP sink)
needs aiosmtpd, which comes with the ``test`` extra:
``pip install 'postdesk[test]'``.
"""
