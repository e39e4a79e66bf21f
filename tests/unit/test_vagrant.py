"""The Vagrant backend without Vagrant: the matrix export, ssh-config parsing and the route check."""

from __future__ import annotations

import json
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
    entry = vagrant.machine_entry(
        name, "kcompat-abc", kernel, initrd, vagrant.command_line(machine), tmp_path / "key", "qemu"
    )
    exported = json.loads(vagrant.export([entry], tmp_path / "machines.json").read_text())
    assert exported[0]["cmdline"].endswith(
        "kc_cgroups=hybrid kc_userns=on kc_overlay=load kc_root=disk kc_net=dhcp"
    )
    assert Path(exported[0]["kernel"]).read_bytes() == b"kernel"  # copied where libvirt's qemu user can read
    assert exported[0]["box"] == "kcompat-abc"
    assert exported[0]["console"].endswith("m-6-1-v2-userns-off-console.log")
