"""The daemon's roles: the arbiter, worker, scanner, watcher, queue, status board, systemd
notify and logs. Built on the spool and the library; the command line starts it."""
