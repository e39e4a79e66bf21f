"""The soak's pure parts (benchmarks/soak): the seeded plan, the leak diff of two snapshots, what a
run must give, and the exit code."""

from __future__ import annotations

import dataclasses
import random
import signal
from collections import Counter

import pytest

from benchmarks.soak.leaks import Leaks, Scope, Snapshot, diff
from benchmarks.soak.plan import (
    COMMANDS,
    ENDLESS,
    EXIT_KILLED,
    EXIT_RUNTIME,
    IMAGE_COMMAND,
    STARTUP_KILL_WINDOW,
    Command,
    Kill,
    Limits,
    Plan,
    Source,
    Userns,
    judge,
    make_plans,
)
from benchmarks.soak.procfs import Proc
from benchmarks.soak.report import Verdict

STORE = "/store"
MARKER = "soak-42-"
HOST_PIDNS = 4026531836
CONTAINER_PIDNS = 4026532900


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert make_plans(300, random.Random(5)) == make_plans(300, random.Random(5))
    assert make_plans(300, random.Random(5)) != make_plans(300, random.Random(6))


def test_seed_1_keeps_the_mix_it_always_had() -> None:
    """The first runs of the default seed, as the soak drew them before it was split up: a change in
    the order of the draws changes every soak's figures."""
    first = [plan.describe() for plan in make_plans(6, random.Random(1))]
    assert first == [
        "#0 rootfs userns=default limits=pids kill=init",
        "#1 rootfs userns=host limits=memory kill=workload",
        "#2 rootfs userns=host limits=cpus kill=workload",
        "#3 copy userns=host limits=pids kill=runtime-startup at 0 ms",
        "#4 copy userns=default limits=pids kill=runtime-startup at 35 ms",
        "#5 rootfs userns=host limits=memory kill=none",
    ]


def test_a_soak_of_200_covers_every_kind() -> None:
    plans = make_plans(200, random.Random(1))
    assert {plan.source for plan in plans} == set(Source)
    assert {plan.userns for plan in plans} == set(Userns)
    assert {plan.limits for plan in plans} == set(Limits)
    assert {plan.kill for plan in plans} == set(Kill)
    assert {plan.command for plan in plans if plan.kill is Kill.NONE} == {*COMMANDS, IMAGE_COMMAND}
    assert [plan.index for plan in plans] == list(range(200))


def test_killed_runs_never_end_by_themselves_and_startup_kills_land_in_the_window() -> None:
    plans = make_plans(500, random.Random(3))
    assert all(plan.command.argv == ENDLESS for plan in plans if plan.kill is not Kill.NONE)
    assert all(plan.command != IMAGE_COMMAND for plan in plans if plan.source is Source.ROOTFS)
    startup = [plan.delay for plan in plans if plan.kill is Kill.RUNTIME_STARTUP]
    assert startup
    assert all(0 <= delay <= STARTUP_KILL_WINDOW for delay in startup)


def plan(kill: Kill, command: Command = COMMANDS[0]) -> Plan:
    return Plan(0, Source.ROOTFS, Userns.DEFAULT, Limits.NONE, kill, 0.0, command)


@pytest.mark.parametrize(
    ("kill", "code", "good"),
    [
        (Kill.RUNTIME_STARTUP, -signal.SIGKILL, True),
        (Kill.RUNTIME_RUNNING, 0, False),
        (Kill.WORKLOAD, EXIT_KILLED, True),
        (Kill.WORKLOAD, EXIT_RUNTIME, False),
        (Kill.INIT, EXIT_RUNTIME, True),
        (Kill.INIT, 1, False),
    ],
)
def test_a_killed_run_must_end_as_its_kill_says(kill: Kill, code: int, good: bool) -> None:
    assert (judge(plan(kill), code, "") == "") is good


def test_a_run_not_killed_must_give_its_code_and_its_line() -> None:
    command = Command(("/bin/sh",), 3, "soak-out")
    assert judge(plan(Kill.NONE, command), 3, "x\nsoak-out\n") == ""
    assert judge(plan(Kill.NONE, command), 0, "soak-out\n") == "exit 0, expected 3"
    assert "expected a line 'soak-out'" in judge(plan(Kill.NONE, command), 3, "soak-outer\n")


def proc(pid: int, pidns: int, cmdline: str, nspids: tuple[int, ...]) -> Proc:
    return Proc(pid, f"{pid}00", pidns, cmdline, nspids, "S", 1)


BEFORE = Snapshot(
    mounts=Counter({"/ ext4 /dev/vda1": 1}),
    cgroups=frozenset({"/sys/fs/cgroup/runtime/old"}),
    state={"/run/runtime/containers/old": "old"},
    store=frozenset({f"{STORE}/containers/old"}),
    procs=(proc(1, HOST_PIDNS, "/sbin/init", (1,)),),
    held={f"pid:[{HOST_PIDNS}]": frozenset({1})},
    nsfs=frozenset(),
    store_bytes=1000,
    free_bytes=10**9,
)


def counts(leaks: Leaks) -> dict[str, int]:
    return {leak.kind: leak.count for leak in leaks.found}


def test_two_equal_snapshots_leak_nothing() -> None:
    leaks = diff(BEFORE, BEFORE, Scope(MARKER, STORE, HOST_PIDNS, frozenset()))
    assert leaks.kinds() == []
    assert list(counts(leaks)) == [
        "mounts",
        "cgroups",
        "state",
        "store containers",
        "store tmp",
        "processes",
        "namespaces",
        "disk",
    ]


def test_the_diff_counts_what_was_added_and_is_the_soaks() -> None:
    init = proc(500, CONTAINER_PIDNS, f"runtime run --name {MARKER}7 /bin/sleep 1800", (500, 1))
    sleeper = proc(501, CONTAINER_PIDNS, "/bin/sleep 1800", (501, 2))
    someone_elses = proc(600, 4026533000, "nginx", (600, 1))
    after = Snapshot(
        mounts=BEFORE.mounts + Counter({"/store/containers/a/rootfs overlay overlay": 2}),
        cgroups=BEFORE.cgroups
        | {"/sys/fs/cgroup/runtime/a", "/sys/fs/cgroup/runtime/a/init", "/sys/fs/cgroup/runtime/theirs"},
        state={**BEFORE.state, "/run/runtime/containers/a": "a", "/run/runtime/names/x": "theirs"},
        store=BEFORE.store | {f"{STORE}/containers/a", f"{STORE}/tmp/import-1", f"{STORE}/tmp/theirs"},
        procs=(*BEFORE.procs, init, sleeper, someone_elses),
        held={
            **BEFORE.held,
            f"pid:[{CONTAINER_PIDNS}]": frozenset({500, 501}),
            "pid:[4026533000]": frozenset({600}),
        },
        nsfs=frozenset({"net:[4026532901]"}),
        store_bytes=5096,
        free_bytes=10**9 - 4096,
    )
    leaks = diff(BEFORE, after, Scope(MARKER, STORE, HOST_PIDNS, frozenset({"theirs"})))
    assert counts(leaks) == {
        "mounts": 2,
        "cgroups": 2,
        "state": 1,
        "store containers": 1,
        "store tmp": 1,
        "processes": 2,
        "namespaces": 2,
        "disk": 4096,
    }
    assert leaks.items("namespaces") == (f"pid:[{CONTAINER_PIDNS}]", "net:[4026532901] (bind-mounted)")
    assert [leaked.pid for leaked in leaks.procs] == [500, 501]
    assert any("1 other new one(s)" in note for note in leaks.notes)


def test_a_store_that_shrank_leaks_no_disk() -> None:
    after = dataclasses.replace(BEFORE, store_bytes=0)
    assert counts(diff(BEFORE, after, Scope(MARKER, STORE, HOST_PIDNS, frozenset())))["disk"] == 0


@pytest.mark.parametrize(
    ("kinds", "failed", "interrupted", "code"),
    [
        ((), 0, False, 0),
        (("mounts",), 0, False, 1),
        (("disk",), 0, False, 1),
        ((), 1, False, 1),
        ((), 0, True, 130),
        (("state",), 2, True, 130),
    ],
)
def test_the_exit_code_is_0_only_with_no_leak_and_no_unexpected_failure(
    kinds: tuple[str, ...], failed: int, interrupted: bool, code: int
) -> None:
    assert Verdict(kinds, failed, interrupted).exit_code() == code


def test_the_result_line_names_the_leaks() -> None:
    assert Verdict((), 0, False).line(1) == "result: PASS: 0 kind(s) of leak, 0 unexpected failure(s), seed 1"
    assert Verdict(("mounts", "state"), 3, False).line(9) == (
        "result: FAIL: 2 kind(s) of leak (mounts, state), 3 unexpected failure(s), seed 9"
    )
