"""Queues: their settings (paused, max_running), the counts of their jobs, and the claim rules
those settings make."""
