"""Thin ctypes bindings to the Linux syscalls the standard library lacks."""
