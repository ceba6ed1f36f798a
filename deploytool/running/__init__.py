"""Running workers: the typed coordinator-worker protocol (jobs.py), one worker process per runtime, its pool,
the network guard.
"""
