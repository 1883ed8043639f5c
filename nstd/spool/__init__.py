"""The spool: jobs in the inbox, claimed work, the outbox and reports. Below the daemon's
roles: it imports nothing of the daemon, the web page or the command line."""
