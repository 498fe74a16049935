"""The change log, the per-process change feed, and the real-time endpoints built on them."""
