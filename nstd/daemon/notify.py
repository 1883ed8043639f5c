"""systemd's notify protocol, spoken directly over $NOTIFY_SOCKET (no extra dependency)."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, STATUS=…, WATCHDOG=1, RELOADING=1, STOPPING=1; a no-op outside systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock: socket.socket | None = None
        if self.address:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *fields: str) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError:
            return False

    def watchdog_interval(self) -> float | None:
        """Half of WatchdogSec when systemd asked this process for keep-alives."""
        usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
