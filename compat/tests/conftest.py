"""The compat suite's pytest plumbing: the matrix as a session-scoped `cell` parameter, one VM per
cell per worker (booted on first use, reused by every test of that cell, always stopped), the kernel's
console read before and after every test (compat/harness/cellrun.py), an xdist scheduler that keeps a
cell's tests on one worker, and the results JSON written at the end.

A fault of the kernel during a test fails that test with the fault's headline, whatever its own
assertions said; a crash ends the cell, and its remaining tests are reported as not run.

    pytest compat/tests [--matrix default|full] [--cells 6.1-v2,...] [--accel auto|kvm|tcg] [--smp N] [-n 2]
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compat import matrix
from compat.harness import accel as accelerator
from compat.harness import inject, results
from compat.harness.cellrun import CellRun
from compat.harness.guest import Guest, boot, boot_vagrant
from compat.harness.qemu import SMP_DEFAULT, reap_stale
from compat.matrix import Cell

CELL_PROPERTY = "kcompat_cell"
ABSENT_PROPERTY = "kcompat_expected_absent"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "kernel x flavour matrix")
    group.addoption("--matrix", default="default", help="default or full")
    group.addoption("--cells", default=None, help="comma-separated cells, e.g. 6.1-v2,6.12-hybrid")
    group.addoption("--accel", default="auto", choices=["auto", "kvm", "tcg"], help="QEMU accelerator")
    group.addoption(
        "--backend", default="qemu", choices=["qemu", "vagrant"], help="plain QEMU, or Vagrant with libvirt"
    )
    group.addoption("--reports", default="reports", help="where results.json and the rest land")
    group.addoption("--boot-deadline", type=float, default=180.0, help="seconds for a VM to be ready")
    group.addoption("--append", default="", help="more kernel parameters for every VM (e.g. to break one)")
    group.addoption(
        "--kernel-map", default="", help="NAME=SPEC,...: a cell's kernel NAME is the .deb or directory SPEC"
    )
    group.addoption("--smp", type=int, default=SMP_DEFAULT, help="vCPUs per VM")
    group.addoption(
        "--inject-fault",
        default="",
        help="KIND@TEST: make the kernel fault for real when TEST starts (self-check)",
    )


def selected_cells(config: pytest.Config) -> list[Cell]:
    try:
        return matrix.select(config.getoption("matrix"), config.getoption("cells"))
    except matrix.MatrixError as exc:
        raise pytest.UsageError(str(exc)) from exc


def reports_dir(config: pytest.Config) -> Path:
    return Path(config.getoption("reports")).absolute()


def pytest_configure(config: pytest.Config) -> None:
    try:
        inject.parse(config.getoption("inject_fault"))
    except inject.InjectionError as exc:
        raise pytest.UsageError(f"{exc.message} ({exc.hint})") from exc
    if config.getoption("smp") < 1:
        raise pytest.UsageError("--smp: a VM needs at least one vCPU")
    if not hasattr(config, "workerinput"):  # the controller, or a run without xdist
        directory = reports_dir(config)
        (directory / "cells").mkdir(parents=True, exist_ok=True)
        for stale in (directory / "cells").glob("*.json"):
            stale.unlink()
        reap_stale(directory / "vms")
        config.stash[results.STARTED] = time.time()
        config.stash[results.REPORTS] = []
        config.pluginmanager.register(_Collector(config), "kcompat-results")
        if config.getoption("backend") == "vagrant":
            _start_vagrant(config)


VAGRANT_ENV = pytest.StashKey[Any]()


def _start_vagrant(config: pytest.Config) -> None:
    """The namespace and the libvirt daemons, once for the run (the workers inherit the name)."""
    from compat.harness import vagrant

    why = vagrant.usable()
    if why:
        raise pytest.UsageError(f"--backend vagrant: {why}")
    env = vagrant.start(f"kcompat-{os.getpid()}")
    os.environ["KCOMPAT_NETNS"] = env.netns
    config.stash[VAGRANT_ENV] = env


def pytest_unconfigure(config: pytest.Config) -> None:
    env = config.stash.get(VAGRANT_ENV, None)
    if env is not None:
        from compat.harness import vagrant

        vagrant.stop(env)


class _Collector:
    """On the controller: every test report, for the results JSON."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.config.stash[results.REPORTS].append(results.test_entry(report, CELL_PROPERTY, ABSENT_PROPERTY))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        cells = selected_cells(metafunc.config)
        metafunc.parametrize("cell", cells, ids=[cell.id for cell in cells], scope="session")
    if "feature" in metafunc.fixturenames:
        metafunc.parametrize("feature", matrix.FEATURES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "cell" in callspec.params:
            item.user_properties.append((CELL_PROPERTY, callspec.params["cell"].id))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """All of a cell's tests go to one worker, which boots that cell's VM once (not loadgroup: pytest
    9.2 with pytest-xdist 3.8 breaks `--dist loadgroup`, xdist #1386)."""
    from xdist.scheduler import LoadScopeScheduling

    cells = sorted((cell.id for cell in selected_cells(config)), key=len, reverse=True)

    class CellScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            parameters = nodeid.partition("[")[2]
            return next((cell for cell in cells if parameters.startswith(cell)), nodeid)

    return CellScheduling(config, log)


@pytest.fixture(scope="session")
def cell_run(cell: Cell, request: pytest.FixtureRequest) -> Iterator[CellRun]:
    """The cell's VM, booted on first use (an infra error retried once, a kernel crash confirmed by a
    second boot); its last VM always stopped."""
    config = request.config
    directory = reports_dir(config)
    workdir = directory / "vms" / cell.id
    record = results.CellRecord(cell)
    kernels = dict(item.split("=", 1) for item in config.getoption("kernel_map").split(",") if "=" in item)
    spec = kernels.get(cell.kernel, cell.kernel)
    mode = accelerator.choose(config.getoption("accel"), spec)
    record.accel = mode
    extra = tuple(config.getoption("append").split())
    smp = config.getoption("smp")

    def fresh() -> Guest:
        if config.getoption("backend") == "vagrant":
            driver = "kvm" if mode == "kvm" else "qemu"  # lv.driver, from the same accelerator probe
            return boot_vagrant(cell, workdir, os.environ["KCOMPAT_NETNS"], driver, extra, spec)
        return boot(cell, workdir, mode, config.getoption("boot_deadline"), extra, spec, smp)

    run = CellRun(fresh, record, directory, workdir)
    run.injection = inject.parse(config.getoption("inject_fault"))
    try:
        run.start()
        yield run
    finally:
        run.finish()


@pytest.fixture
def guest(cell_run: CellRun, request: pytest.FixtureRequest) -> Guest:
    """The cell's guest for one test; the kernel's console is read first. After a crash, the test is
    not run."""
    why = cell_run.not_run_because()
    if why:
        request.node.user_properties.append((results.NOT_RUN_PROPERTY, why))
        pytest.skip(why)
    cell_run.before()
    assert cell_run.guest is not None
    return cell_run.guest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    run = _cell_run(item)
    if run is not None:
        run.inject(results.case_key(item.nodeid, run.record.cell.id))
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """After a test's call: the kernel's faults meanwhile fail it, with the fault as its message."""
    outcome = yield
    run = _cell_run(item)
    if call.when != "call" or run is None or run.guest is None:
        return
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    test = results.case_key(item.nodeid, run.record.cell.id)
    found = run.after(test, report.failed, item.runtest)
    if found:
        headline = f"{found[0].headline} ({found[0].confirmation})"
        report.outcome = "failed"
        report.longrepr = "\n\n".join([headline, found[0].excerpt, str(report.longrepr or "")]).rstrip()
        report.user_properties.append((results.FAULT_PROPERTY, headline))


def _cell_run(item: pytest.Item) -> CellRun | None:
    funcargs = getattr(item, "funcargs", {})
    found = funcargs.get("cell_run")
    return found if isinstance(found, CellRun) else None


@pytest.fixture
def absent(request: pytest.FixtureRequest) -> Any:
    """Call it when a test confirms that a feature is absent, as its cell expects."""

    def mark() -> None:
        request.node.user_properties.append((ABSENT_PROPERTY, True))

    return mark


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    directory = reports_dir(config)
    written = results.assemble(config, directory, selected_cells(config))
    if written is not None:
        session.config.stash[results.SUMMARY] = written


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    summary = config.stash.get(results.SUMMARY, None)
    if summary:
        terminalreporter.write_sep("=", "kernel x flavour matrix")
        terminalreporter.write_line(summary)


def pytest_report_header(config: pytest.Config) -> str:
    cells = ", ".join(cell.id for cell in selected_cells(config))
    return f"kcompat cells: {cells} (KCOMPAT_CACHE={os.environ.get('KCOMPAT_CACHE', '~/.cache/kcompat')})"
