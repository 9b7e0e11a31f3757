"""The prodserver-tui task worker: django-tasks-db's worker loop, as processes x threads.

Run as ``python -m backends.taskworker`` with Django settings in the environment.
"""
