"""Log lines for a terminal or for journald (with sd-daemon priorities)."""

from __future__ import annotations

import logging
import os
import sys

#: sd-daemon(3) priority prefixes, so `journalctl -p err` finds our errors.
JOURNAL_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """``<N>`` in front of every line of a record: journald reads it as the priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{JOURNAL_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def on_journal() -> bool:
    """stderr is journald's stream (systemd sets JOURNAL_STREAM to its device:inode)."""
    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)
