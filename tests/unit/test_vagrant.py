"""The Vagrant backend without Vagrant: the matrix export, ssh-config parsing and the route check."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip(
    "paramiko", reason="the Vagrant backend reads ssh-config with paramiko (pip install .[compat])"
)

from compat import flavours
from compat.errors import CompatError
from compat.harness import vagrant
from compat.harness.qemu import Machine

SSH_CONFIG = """Host m-6-1-v2
  HostName 192.168.121.244
  User root
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /cache/rootfs-image-31f7/id_ed25519
  IdentitiesOnly yes
  LogLevel FATAL
"""


def test_ssh_config_gives_the_guest_address_user_and_key() -> None:
    target = vagrant.parse_ssh_config(SSH_CONFIG, "m-6-1-v2")
    assert (target.address, target.port, target.user) == ("192.168.121.244", 22, "root")
    assert target.identity == "/cache/rootfs-image-31f7/id_ed25519"


def test_ssh_config_without_the_machine_is_an_error() -> None:
    with pytest.raises(vagrant.VagrantError, match="says nothing about"):
        vagrant.parse_ssh_config(SSH_CONFIG, "m-7-x-v2")


def test_the_route_must_leave_by_a_libvirt_bridge() -> None:
    inside = "192.168.121.244 dev virbr1 src 192.168.121.1 uid 0 \n    cache \n"
    assert vagrant.check_route(inside, "192.168.121.244") == "virbr1"
    outside = "192.168.121.244 via 10.0.0.1 dev eth0 src 10.0.0.5 uid 0 \n    cache \n"
    with pytest.raises(vagrant.VagrantError, match="eth0, not a libvirt bridge"):
        vagrant.check_route(outside, "192.168.121.244")
    with pytest.raises(vagrant.VagrantError, match="no device"):
        vagrant.check_route("RTNETLINK answers: Network is unreachable", "192.168.121.244")


def test_a_vagrant_error_is_a_compat_error_with_a_hint() -> None:
    with pytest.raises(CompatError) as info:
        vagrant.check_route("RTNETLINK answers: Network is unreachable", "192.168.121.244")
    assert isinstance(info.value, vagrant.VagrantError)
    assert info.value.message.endswith("refusing to connect")
    assert "virsh net-list" in info.value.hint
    with pytest.raises(vagrant.VagrantError) as lost:
        vagrant.parse_ssh_config(SSH_CONFIG, "m-7-x-v2")
    assert "vagrant status" in lost.value.hint


def test_the_export_carries_what_the_qemu_backend_boots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vagrant, "IMAGES", tmp_path / "images")
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    machine = Machine(kernel, initrd, tmp_path / "root.img", None, flavours.parse("hybrid"))
    name = vagrant.machine_name("6.1-v2+userns-off")
    assert name == "m-6-1-v2-userns-off"
    env = vagrant.Environment("kcompat-4242", [])
    entry = vagrant.machine_entry(
        env, name, "kcompat-abc", kernel, initrd, vagrant.command_line(machine), tmp_path / "key", "qemu"
    )
    exported = json.loads(vagrant.export([entry], tmp_path / "machines.json").read_text())
    assert exported[0]["cmdline"].endswith(
        "kc_cgroups=hybrid kc_userns=on kc_overlay=load kc_root=disk kc_net=dhcp"
    )
    assert Path(exported[0]["kernel"]).read_bytes() == b"kernel"  # copied where libvirt's qemu user can read
    assert exported[0]["box"] == "kcompat-abc"
    assert exported[0]["console"].endswith("kcompat-4242/m-6-1-v2-userns-off-console.log")
    assert exported[0]["prefix"] == "kcompat-4242-"  # the Vagrantfile's default_prefix: this run's names


class FakeVirsh:
    """virsh with a list of domains and volumes; records what the harness removes."""

    def __init__(self, domains: list[str], volumes: list[str]) -> None:
        self.domains, self.volumes = domains, volumes
        self.removed: list[tuple[str, ...]] = []

    def __call__(self, argv: list[str], **_options: object) -> subprocess.CompletedProcess[str]:
        verb, *rest = argv[3:] if argv[0] == "virsh" else ["other"]
        out = ""
        if verb == "list":
            out = "\n".join(self.domains) + "\n"
        elif verb == "vol-list":
            out = " Name   Path\n----------\n" + "".join(
                f" {v}  /var/lib/libvirt/images/{v}\n" for v in self.volumes
            )
        elif verb in ("destroy", "undefine", "vol-delete"):
            self.removed.append((verb, rest[-1] if verb == "vol-delete" else rest[0]))
        return subprocess.CompletedProcess(argv, 0, out, "")


def a_dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def teardown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeVirsh], vagrant.Environment]:
    """A started environment on a fake host: its stop() speaks to the given virsh."""
    monkeypatch.setattr(vagrant, "IMAGES", tmp_path / "images")
    monkeypatch.setattr(vagrant, "RUNS_LOCK", tmp_path / "runs.lock")
    monkeypatch.setattr(vagrant, "LIBVIRT_SOCKET", tmp_path / "libvirt-sock")
    monkeypatch.setattr(vagrant, "_pid", lambda _pidfile: None)  # no daemon comes up: none to stop
    monkeypatch.setattr("compat.harness.vagrant.time.sleep", lambda _seconds: None)

    def environment(virsh: FakeVirsh) -> vagrant.Environment:
        monkeypatch.setattr(vagrant, "run", virsh)
        env = vagrant.start(f"kcompat-{os.getpid()}")
        (env.images / "m-6-1-v2-kernel").parent.mkdir(parents=True)
        (env.images / "m-6-1-v2-kernel").write_bytes(b"kernel")
        return env

    return environment


def test_stop_removes_this_runs_machines_and_a_dead_runs_but_not_a_live_runs(
    teardown: Callable[[FakeVirsh], vagrant.Environment],
) -> None:
    ours, live, dead = f"kcompat-{os.getpid()}-", f"kcompat-{os.getppid()}-", f"kcompat-{a_dead_pid()}-"
    box = "kcompat-5a5dad29fc237ca2_vagrant_box_image_0_box.img"
    virsh = FakeVirsh(
        [f"{ours}m-6-1-v2", f"{live}m-6-1-v2", f"{dead}m-7-x-v2", "someone-elses-vm"],
        [f"{ours}m-6-1-v2.img", f"{live}m-6-1-v2.img", f"{dead}m-7-x-v2.img", box, "other.qcow2"],
    )
    env = teardown(virsh)
    # Another run is going on: it holds the runs' lock too.
    other = os.open(vagrant.RUNS_LOCK, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_SH)
    try:
        vagrant.stop(env)
    finally:
        os.close(other)
    assert {name for verb, name in virsh.removed if verb == "undefine"} == {
        f"{ours}m-6-1-v2",
        f"{dead}m-7-x-v2",
    }
    # The box's volume stays: the live run's machine is backed by it.
    assert {name for verb, name in virsh.removed if verb == "vol-delete"} == {
        f"{ours}m-6-1-v2.img",
        f"{dead}m-7-x-v2.img",
    }
    assert not env.images.exists()


def test_the_last_run_takes_the_box_volume_with_it(
    teardown: Callable[[FakeVirsh], vagrant.Environment],
) -> None:
    box = "kcompat-5a5dad29fc237ca2_vagrant_box_image_0_box.img"
    virsh = FakeVirsh([], [box, "other.qcow2"])
    env = teardown(virsh)
    vagrant.stop(env)
    assert virsh.removed == [("vol-delete", box)]
    assert not vagrant.IMAGES.exists()


def test_one_vagrant_up_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "vagrant-up.lock"
    order: list[str] = []

    def second_worker() -> None:
        with vagrant.one_at_a_time(lock):
            order.append("second up")

    with vagrant.one_at_a_time(lock):
        worker = threading.Thread(target=second_worker)
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive()  # waiting for the first `vagrant up`
        order.append("first up done")
    worker.join(timeout=10)
    assert order == ["first up done", "second up"]
