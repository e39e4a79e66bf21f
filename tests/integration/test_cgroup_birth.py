"""The setup process is born in a real cgroup (clone3 CLONE_INTO_CGROUP) with glibc's TID field set:
needs root, to make the cgroup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.linux import libc

CGROUP2 = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a cgroup")
def test_the_child_is_born_in_the_cgroup_with_its_own_tid() -> None:
    leaf = Path(CGROUP2, f"test-birth-{os.getpid()}")
    leaf.mkdir()
    fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pid = libc.fork_into_cgroup(fd)
        if pid == 0:
            code = 1
            try:
                inside = Path("/proc/self/cgroup").read_text().splitlines()[-1].endswith(f"/{leaf.name}")
                code = 0 if inside and libc.glibc_tid_field() is not None else 2
            finally:
                os._exit(code)
        assert pid is not None
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
        leaf.rmdir()
