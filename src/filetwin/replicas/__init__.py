"""Replicas: further copies of the repository and of on-write journals, on S3 or
another disk, kept asynchronously by the daemon and readable by a new host.

``layout`` (where a host's copy lives), ``mirror`` (copying repository
objects in a safe order), ``shipper`` (journal records as immutable objects),
``replicator`` (the daemon's tasks, lag and events), ``remote`` (reading a
host's copy with no state directory: history, restore, hosts) and ``check``
(what a replica lacks or holds damaged).
"""
