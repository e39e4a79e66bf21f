"""The harness without VMs: failure classification from recorded consoles, the accelerator
decision with fakes, cells, and stale-VM reaping."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from compat import faults, flavours, matrix, proc
from compat.errors import CompatError
from compat.harness import accel
from compat.harness.kernel import KernelCrashed, KernelWatch
from compat.harness.qemu import BootError, Machine, Vm, reap_stale
from runtime.features import kconfig

CONSOLES = Path(__file__).parents[1] / "data" / "consoles"
KCONFIG = Path(__file__).parents[1] / "data" / "kconfig"


def vm_with_console(tmp_path: Path, recorded: str) -> Vm:
    machine = Machine(Path("/k"), Path("/i"), Path("/r"), None, flavours.parse("v2"))
    vm = Vm(machine, tmp_path)
    (tmp_path / "console.log").write_text((CONSOLES / recorded).read_text())
    vm.watch = KernelWatch(vm.console, alive=lambda: True)
    return vm  # never started: wait_ready reads only the console


def test_a_silent_boot_that_times_out_is_an_infra_error_with_the_console_tail(tmp_path: Path) -> None:
    with pytest.raises(BootError) as failure:
        vm_with_console(tmp_path, "silence.log").wait_ready(deadline=0.3)
    assert failure.value.kind == "boot timeout"
    assert "Freeing unused kernel image" in failure.value.console_tail


class _Exited:
    """A QEMU that has gone, as Vm sees it: -no-reboot makes the kernel's reboot after a panic its exit."""

    returncode = 0
    process = SimpleNamespace(stderr=None)

    def poll(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("recorded", "kind", "shown", "exited"),
    [
        ("6.1-boot-panic.log", faults.FaultType.PANIC, "Unable to mount root fs", True),
        ("panic.log", faults.FaultType.PANIC, "Unable to mount root fs", True),
        # The page fault's "BUG: kernel NULL pointer dereference" line, its oops, then silence: a timeout.
        ("oops.log", faults.FaultType.BUG, "NULL pointer dereference", False),
    ],
)
def test_a_crash_while_booting_is_the_kernels_failure_not_an_infra_error(
    tmp_path: Path, recorded: str, kind: faults.FaultType, shown: str, exited: bool
) -> None:
    vm = vm_with_console(tmp_path, recorded)
    if exited:
        vm.process = _Exited()  # type: ignore[assignment]
    with pytest.raises(KernelCrashed) as crashed:
        vm.wait_ready(deadline=0.5)
    ending = faults.crash(crashed.value.faults)
    assert ending is not None
    assert ending.type is kind
    assert shown in ending.excerpt


def test_a_boot_that_hangs_with_a_stall_on_the_console_is_the_kernels_failure(tmp_path: Path) -> None:
    hung = next(
        f
        for f in faults.classify((CONSOLES / "6.1-hung-task.log").read_bytes())
        if f.type is faults.FaultType.HUNG_TASK
    )
    vm = vm_with_console(tmp_path, "silence.log")
    with vm.console.open("a") as console:
        console.write(hung.excerpt + "\n")
    with pytest.raises(KernelCrashed) as crashed:
        vm.wait_ready(deadline=0.5)
    ending = faults.crash(crashed.value.faults)
    assert ending is not None
    assert ending.type is faults.FaultType.HUNG_TASK


def test_a_guest_init_failure_is_its_own_kind(tmp_path: Path) -> None:
    vm = vm_with_console(tmp_path, "silence.log")
    with (tmp_path / "console.log").open("a") as console:
        console.write("KCOMPAT-FAILED no root disk /dev/vda\n")
    with pytest.raises(BootError) as failure:
        vm.wait_ready(deadline=0.3)
    assert failure.value.kind == "guest init failed"


@pytest.mark.parametrize(
    ("requested", "device", "cached", "probe_says", "chosen", "learnt"),
    [
        ("tcg", True, None, True, "tcg", None),  # asked for: no probe
        ("kvm", False, None, False, "kvm", None),
        ("auto", False, None, True, "tcg", None),  # no /dev/kvm: no probe
        ("auto", True, True, False, "kvm", None),  # a cached verdict wins
        ("auto", True, None, False, "tcg", False),  # /dev/kvm, but the probe VM hangs: TCG, remembered
        ("auto", True, None, True, "kvm", True),
    ],
)
def test_accelerator_decision(
    requested: str, device: bool, cached: bool | None, probe_says: bool, chosen: str, learnt: bool | None
) -> None:
    probes: list[int] = []

    def probe() -> bool:
        probes.append(1)
        return probe_says

    assert accel.decide(requested, device, cached, probe) == (chosen, learnt)
    assert len(probes) == (1 if learnt is not None else 0)


def test_cells_parse_and_the_matrices_hold_the_required_cells() -> None:
    cell = matrix.parse_cell("6.1-v2+userns-off")
    assert (cell.kernel, cell.flavour.name) == ("6.1", "v2+userns-off")
    required = {
        "5.10-v1",
        "5.10-v2",
        "6.1-hybrid",
        "6.1-v2+userns-off",
        "6.1-v2+no-overlay",
        "6.12-v2",
        "6.12-hybrid",
        "7.x-v2",
    }
    assert required <= {c.id for c in matrix.select("default")}
    assert any(c.flavour.root is flavours.Root.INITRAMFS for c in matrix.select("default"))
    assert set(matrix.DEFAULT) <= set(matrix.full())
    with pytest.raises(matrix.MatrixError):
        matrix.parse_cell("6.1")
    with pytest.raises(matrix.MatrixError):
        matrix.select("huge")


def test_a_bad_cell_says_what_a_cell_is_in_its_hint() -> None:
    with pytest.raises(CompatError) as info:
        matrix.parse_cell("6.1")
    assert isinstance(info.value, matrix.MatrixError)
    assert info.value.hint == "a cell is KERNEL-FLAVOUR, e.g. 6.1-v2"
    with pytest.raises(matrix.MatrixError) as bad_flavour:
        matrix.parse_cell("6.1-v3")
    assert bad_flavour.value.message == "cell '6.1-v3': unknown flavour part 'v3' in 'v3'"
    assert bad_flavour.value.hint.startswith("known parts: v2, hybrid")


def test_a_command_that_cannot_start_is_a_compat_error() -> None:
    with pytest.raises(CompatError) as info:
        proc.run(["/nonexistent/kcompat-tool"])
    assert isinstance(info.value, proc.CommandError)
    assert info.value.returncode == 127
    assert "cannot start" in str(info.value)


# The expectations must agree with shared/reference/kernel-features.md.
@pytest.mark.parametrize(
    ("cell", "feature", "value"),
    [
        ("6.12-hybrid", "cgroup.memory", "v2"),  # no CONFIG_MEMCG_V1: memory stays in v2
        ("6.12-v1", "cgroup.memory", "none"),
        ("6.1-hybrid", "cgroup.memory", "v1"),
        ("5.10-v2", "cgroup.kill", False),  # 5.14
        ("6.1-v2", "cgroup.kill", True),
        ("5.10-v2", "memory.peak", False),  # 5.19
        ("5.10-v2", "overlay.in_userns", False),  # 5.11
        ("6.1-v2+userns-off", "overlay.in_userns", None),  # nothing to try it in
        ("6.1-v2+no-overlay", "overlay.mountable", False),
        ("6.1-initramfs-root", "pivot_root.usable", False),  # EINVAL from rootfs before 7.0
        ("7.x-initramfs-root", "pivot_root.usable", True),  # nullfs root
        ("6.1-v2+userns-unpriv-off", "userns.root", True),
        ("6.1-v2+userns-unpriv-off", "userns.unprivileged", False),
    ],
)
def test_expectations_follow_the_reference(cell: str, feature: str, value: matrix.Value) -> None:
    parsed = matrix.parse_cell(cell)
    config = kconfig.load(KCONFIG / f"debian-{parsed.kernel}.config")
    assert matrix.expected(parsed, config)[feature] == value


def _stand_in(tmp_path: Path, program: str, pidfile: Path) -> subprocess.Popen[bytes]:
    """A live process under the name `program`, its pidfile on its command line as QEMU's -pidfile is."""
    link = tmp_path / "bin" / program
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(sys.executable)
    pidfile.parent.mkdir(parents=True)
    process = subprocess.Popen(
        [str(link), "-S", "-c", "import time; time.sleep(60)", "-pidfile", str(pidfile)]
    )
    pidfile.write_text(str(process.pid))
    return process


def test_a_stale_qemu_is_reaped_and_anything_else_left_alone(tmp_path: Path) -> None:
    stale_pidfile = tmp_path / "vms" / "6.1-v2" / "qemu.pid"
    reused_pidfile = tmp_path / "vms" / "6.12-v1" / "qemu.pid"
    stale = _stand_in(tmp_path, "qemu-system-x86_64", stale_pidfile)
    reused = _stand_in(tmp_path, "not-qemu", reused_pidfile)  # the pid was reused by something else
    try:
        assert reap_stale(tmp_path / "vms") == [stale.pid]
        assert stale.wait(timeout=10) == -signal.SIGKILL
        assert reused.poll() is None
        assert not stale_pidfile.exists()
        assert not reused_pidfile.exists()
    finally:
        for process in (stale, reused):
            process.kill()
            process.wait()


def test_a_half_written_ready_marker_is_not_ready(tmp_path: Path) -> None:
    vm = vm_with_console(tmp_path, "silence.log")
    with (tmp_path / "console.log").open("a") as console:
        console.write("KCOMPAT-READY re")  # the guest is still writing the line
    with pytest.raises(BootError) as failure:
        vm.wait_ready(deadline=0.3)
    assert failure.value.kind == "boot timeout"
