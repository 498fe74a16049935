"""What tests share: databases, settings, users, jobs, apps and child processes.

Tests import their helpers from here (or from their own package's support module), never from
a `conftest` or from another test module.
"""
