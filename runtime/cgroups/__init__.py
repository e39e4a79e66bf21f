"""Cgroup managers: one interface, a v1 and a v2 implementation, chosen per controller from detection.

On a hybrid host a container gets both: each controller is used where it actually lives.
"""

from __future__ import annotations

from runtime.cgroups.base import Cgroup, CgroupError, Limits
from runtime.cgroups.manager import Manager, Unavailable, plan

__all__ = ["Cgroup", "CgroupError", "Limits", "Manager", "Unavailable", "plan"]
