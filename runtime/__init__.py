"""A container runtime that detects what its host kernel can do and adapts to it."""
