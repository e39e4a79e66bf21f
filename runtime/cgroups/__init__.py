"""Cgroup managers: one interface, a v1 and a v2 implementation, chosen per controller from the layout.

On a hybrid host a container gets both: each controller is used where it actually lives. These
modules are on `runtime run`'s start path: os.path and plain classes, nothing heavy imported.
"""
