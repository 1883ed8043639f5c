"""The daemon's web page (server.py, its assets in static/) and /metrics (metrics.py)."""
