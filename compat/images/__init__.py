"""Fetching and unpacking the OS images and packages that the compatibility suite boots."""
