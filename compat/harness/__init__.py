"""The qualification harness: VM backends, readiness, and the glue to vm-images."""
