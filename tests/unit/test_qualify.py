"""`compat qualify`'s comparison, on recorded results: categories, explanations, verdicts."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from compat import qualify
from compat.faults import FaultType
from compat.paths import REPO
from compat.results import schema
from compat.results.model import KernelFault, Results
from compat.results.status import EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED
from runtime.features import kconfig

DATA = Path(__file__).parents[1] / "data"


def recorded(name: str) -> Results:
    return schema.load(DATA / "reports" / f"{name}.json")


def config(kernel_id: str) -> kconfig.KernelConfig:
    return kconfig.load(DATA / "kconfig" / f"debian-{kernel_id}.config")


@pytest.mark.parametrize(
    ("before", "after", "category"),
    [
        (True, False, qualify.Category.REGRESSION),  # a feature lost
        ("v1", "none", qualify.Category.REGRESSION),  # a controller gone
        (False, True, qualify.Category.IMPROVEMENT),
        (None, True, qualify.Category.IMPROVEMENT),
        ("v1", "v2", qualify.Category.CHANGED),  # behaviour that changed without failing
    ],
)
def test_feature_categories(before: qualify.Value, after: qualify.Value, category: qualify.Category) -> None:
    assert qualify.classify(before, after) is category


@pytest.mark.parametrize(
    ("before", "after", "category"),
    [
        ("passed", "failed", qualify.Category.REGRESSION),
        ("passed", "expected-absent", qualify.Category.REGRESSION),  # a limit no longer enforced
        ("expected-absent", "passed", qualify.Category.IMPROVEMENT),
        ("failed", "error", qualify.Category.CHANGED),
    ],
)
def test_test_categories(before: str, after: str, category: qualify.Category) -> None:
    assert qualify.classify_test(before, after) is category


def test_the_recorded_pair_is_compared_flavour_by_flavour() -> None:
    findings = qualify.compare(recorded("diff-baseline"), recorded("diff-candidate"))
    by_key = {(f.where, f.key): f for f in findings}
    memory = by_key[("hybrid", "cgroup.memory")]
    assert (memory.category, memory.before, memory.after) == (qualify.Category.CHANGED, "v1", "v2")
    assert "memory limits (--memory) need it" in memory.explanation
    assert by_key[("hybrid", "memory.peak")].category is qualify.Category.IMPROVEMENT
    assert by_key[("v2", "cgroups::test_cpu_quota_shows_throttling")].category is qualify.Category.REGRESSION
    assert not [f for f in findings if f.where == "v1"]  # no baseline v1 cell to compare with
    assert qualify.verdict(findings, recorded("diff-baseline"), recorded("diff-candidate")) == EXIT_FAIL


def test_the_same_results_qualify_with_no_findings() -> None:
    clean = recorded("clean")
    findings = qualify.compare(clean, clean)
    assert findings == []
    assert qualify.verdict(findings, clean, clean) == EXIT_PASS


def test_an_infra_error_means_undecided() -> None:
    failing = recorded("failing")
    assert any(cell.infra_error for cell in failing.cells)
    assert qualify.verdict([], recorded("clean"), failing) == EXIT_UNDECIDED


def test_a_regression_is_not_hidden_by_an_infra_error_elsewhere() -> None:
    base, cand = recorded("diff-baseline"), recorded("failing")  # failing: 7.x-v2 did not boot
    findings = qualify.compare(base, cand)
    assert [f.key for f in findings if f.category is qualify.Category.REGRESSION] == [
        "cgroups::test_memory_limit_ends_in_an_oom_kill"
    ]
    assert qualify.verdict(findings, base, cand) == EXIT_FAIL


def test_the_configs_say_the_v1_controllers_are_gone_in_6_12() -> None:
    findings = qualify.compare_configs(config("6.1"), config("6.12"))
    assert {f.key for f in findings} == {"memory.v1", "cpuset.v1"}
    memory = next(f for f in findings if f.key == "memory.v1")
    assert "CONFIG_MEMCG_V1 unset" in memory.explanation
    assert "hosts that boot with cgroup v1 lose memory limits" in memory.explanation
    assert qualify.compare_configs(config("6.1"), config("6.1")) == []


def test_the_report_puts_the_verdict_and_the_diff_first(tmp_path: Path) -> None:
    base, cand = recorded("diff-baseline"), recorded("diff-candidate")
    findings = qualify.compare(base, cand) + qualify.compare_configs(config("6.1"), config("6.12"))
    code = qualify.verdict(findings, base, cand)
    qualify.write(tmp_path, code, "6.12", "6.1", findings, {"candidate": cand, "baseline": base})
    text = (tmp_path / "qualify.md").read_text()
    assert (
        text.index("**Verdict: REGRESSIONS**")
        < text.index("## Regressions")
        < text.index("## The candidate matrix")
    )
    assert "CONFIG_MEMCG_V1 unset" in text
    assert (tmp_path / "qualify.json").read_text().count('"category"') == len(findings)
    assert "<h1>6.12 against 6.1: REGRESSIONS</h1>" in (tmp_path / "qualify.html").read_text()


def test_every_injection_names_what_the_suite_observes() -> None:
    """A knob flags a feature or a test of the suite; a fault flags the type its kind sets off."""
    from compat.harness import inject
    from compat.matrix import FEATURES

    tests = {
        f"{path.stem.removeprefix('test_')}::{name}"
        for path in (REPO / "compat" / "tests").glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)
    }
    assert len(qualify.INJECTIONS) >= 12
    for injection in qualify.INJECTIONS:
        if injection.fault:
            found = inject.parse(injection.fault)
            assert found is not None
            assert found.kind.expected.value == injection.flags
            assert any(key.endswith(f"::{found.test}") for key in tests)
        else:
            assert injection.flags in FEATURES or injection.flags in tests, injection
    kinds = {inject.parse(i.fault).kind for i in qualify.INJECTIONS if i.fault}  # type: ignore[union-attr]
    assert {inject.Kind.PANIC, inject.Kind.WARN} <= kinds
    assert kinds & {inject.Kind.HANG, inject.Kind.LOCKUP}


def _faulted(results: Results, kind: FaultType, title: str) -> Results:
    fault = KernelFault(kind, title, None, "excerpt", kind is FaultType.PANIC, "adaptation::test_x")
    return dataclasses.replace(results, cells=(dataclasses.replace(results.cells[0], faults=(fault,)),))


def test_the_self_check_counts_an_injection_only_when_its_own_regression_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = recorded("clean")
    missed = qualify.INJECTIONS[0]
    wrong_fault = next(i for i in qualify.INJECTIONS if i.fault)  # flagged, but as another fault type
    monkeypatch.setattr(qualify, "baseline_run", lambda _baseline, _flavours, _out: clean)

    def run_suite(_kernel: str, _flavours: object, out: Path, **_options: str) -> Results:
        injection = next(i for i in qualify.INJECTIONS if i.slug == out.name)
        if not injection.fault:
            return dataclasses.replace(clean, started=injection.slug)
        kind = FaultType.OOPS if injection is wrong_fault else FaultType(injection.flags)
        return dataclasses.replace(_faulted(clean, kind, f"title {injection.slug}"), started=injection.slug)

    def compare(_before: Results, injected: Results) -> list[qualify.Finding]:
        injection = next(i for i in qualify.INJECTIONS if i.slug == injected.started)
        if injection.fault:
            title = injected.cells[0].faults[0].title
            return [qualify.Finding(qualify.Category.REGRESSION, "v2", "fault", title, None, "x", "")]
        flagged = "psi.other" if injection is missed else injection.flags
        return [
            qualify.Finding(
                qualify.Category.REGRESSION, injection.flavour, "feature", flagged, True, False, ""
            )
        ]

    monkeypatch.setattr(qualify, "run_suite", run_suite)
    monkeypatch.setattr(qualify, "compare", compare)
    detected, lines = qualify.self_check("6.1", tmp_path)
    assert detected == len(qualify.INJECTIONS) - 2
    assert lines[0] == f"MISSED: {missed.name} on {missed.flavour} (flagged: psi.other)"
    assert f"MISSED: {wrong_fault.name} on v2 (flagged: title {wrong_fault.slug})" in lines
    assert (
        lines[-1] == f"{len(qualify.INJECTIONS) - 2}/{len(qualify.INJECTIONS)} injected regressions detected"
    )


def test_a_fault_only_the_candidate_has_is_the_first_regression_with_its_title() -> None:
    base = recorded("clean")
    crashed = _faulted(base, FaultType.PANIC, "kernel panic: sysrq triggered crash")
    findings = qualify.compare(base, crashed)
    assert findings[0].category is qualify.Category.REGRESSION
    assert (findings[0].kind, findings[0].key) == ("fault", "kernel panic: sysrq triggered crash")
    assert findings[0].explanation.startswith(
        "kernel panic during adaptation::test_x: kernel panic: sysrq triggered crash (seen once, not confirmed)"
    )
    assert qualify.verdict(findings, base, crashed) == EXIT_FAIL
    assert [f.category for f in qualify.compare(crashed, base)] == [qualify.Category.IMPROVEMENT]


def test_the_suite_without_the_compat_extra_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from compat.errors import CompatError
    from compat.proc import CommandError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "xdist" else real_find_spec(name, *rest),
    )
    started: list[object] = []

    def pytest_without_xdist(argv: list[str], **_options: object) -> None:
        started.append(argv)  # the suite errors out and writes no results.json
        raise CommandError(argv, 1, "ERROR compat/tests - ModuleNotFoundError")

    monkeypatch.setattr(qualify, "run", pytest_without_xdist)
    with pytest.raises(CompatError) as failure:
        qualify.run_suite("6.1", ("v2",), tmp_path)
    assert "pytest-xdist" in failure.value.message
    assert "paramiko" not in failure.value.message  # only what is missing
    assert failure.value.hint == "pip install 'kcompat[compat]'"
    assert started == []  # refused before pytest starts
