"""`compat qualify`: a candidate kernel against a baseline, with a verdict.

Both run the compat suite in the same flavours; then every feature and every test is compared, flavour
by flavour, and every change is sorted (regression, improvement, changed) and explained in container
terms. The kernels' configs are compared too, so a change that no chosen flavour exercises (the v1
memory controller when no v1 host is run) is still said. The pairing and the changes are the results'
diff (compat/results/diff.py); this module sorts and explains them. A kernel fault (a crash, an oops, a WARNING, a hang)
the candidate has and the baseline has not is a regression, listed first with its title. The verdict is
the results' one (compat/results/status.py): EXIT_FAIL for a regression, even beside an infra error;
EXIT_UNDECIDED for an infra error (left after the harness's retry) and no regression; else EXIT_PASS,
qualified.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from compat.errors import CompatError
from compat.faults import FaultType
from compat.images import kernel_catalogue, kernels
from compat.images.cache import cache_root, key
from compat.paths import REPO
from compat.proc import CommandError, run
from compat.results import html as html_matrix
from compat.results import markdown as markdown_matrix
from compat.results import schema
from compat.results.diff import Change, ChangeKind, Pair, PairBy, cell_changes, pairs
from compat.results.model import Cell, Results, present
from compat.results.status import EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, Status, reduce
from runtime.features import fromconfig, kconfig

DEFAULT_FLAVOURS = ("v2", "hybrid", "v1")
Value = str | bool | None


class Category(enum.StrEnum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    CHANGED = "changed"


@dataclass(frozen=True)
class Finding:
    category: Category
    where: str  # a flavour, or "config"
    kind: str  # fault, feature, test or config
    key: str
    before: Value
    after: Value
    explanation: str


# --- what a change means for containers ---------------------------------------------------------------------

EXPLAIN: dict[str, str] = {
    "cgroup.mode": "the cgroup layout the host boots with",
    "cgroup.memory": "where the memory controller lives: memory limits (--memory) need it",
    "cgroup.cpuset": "where the cpuset controller lives: CPU pinning needs it",
    "userns.root": "user namespaces: rootless containers and --userns private need them",
    "userns.unprivileged": "user namespaces for non-root users: rootless containers need them",
    "overlay.mountable": "overlayfs: image layers are shared through it, else every container copies its image",
    "overlay.in_userns": "overlayfs inside a user namespace: rootless containers share layers through it",
    "pivot_root.usable": "pivot_root: without it the runtime falls back to MS_MOVE + chroot",
    "cgroup.kill": "cgroup.kill: killing a container's every process in one write",
    "memory.peak": "memory.peak: a container's peak memory use",
    "psi": "pressure stall information: memory and CPU pressure for schedulers and autoscalers",
}
CONFIG_EXPLAIN: dict[str, str] = {
    "memory.v1": (
        "cgroup v1 memory controller not built (CONFIG_MEMCG_V1 unset): hosts that boot with cgroup v1 lose "
        "memory limits, and on hybrid hosts memory moves to v2; boot with cgroup v2"
    ),
    "cpuset.v1": (
        "cgroup v1 cpuset controller not built (CONFIG_CPUSETS_V1 unset): hosts that boot with cgroup v1 lose "
        "CPU pinning; boot with cgroup v2"
    ),
}


def classify(before: Value, after: Value) -> Category:
    """Lost is a regression, gained an improvement, anything else a change (e.g. memory v1 -> v2)."""
    if present(before) and not present(after):
        return Category.REGRESSION
    if not present(before) and present(after):
        return Category.IMPROVEMENT
    return Category.CHANGED


def explain_feature(name: str, before: Value, after: Value) -> str:
    what = EXPLAIN.get(name, name)
    return f"{name}: {before!r} -> {after!r}: {what}"


def explain_test(group: str, name: str, before: str, after: str) -> str:
    if after == "expected-absent":
        return f"{group}::{name} passed, now the feature is absent: what it checks (a limit, an isolation) is no longer there"
    return f"{group}::{name}: {before} -> {after}"


TEST_RANK = {"passed": 3, "expected-absent": 2, "skipped": 1, "failed": 0, "error": 0}


def classify_test(before: str, after: str) -> Category:
    if TEST_RANK.get(after, 0) < TEST_RANK.get(before, 0):
        return Category.REGRESSION
    if TEST_RANK.get(after, 0) > TEST_RANK.get(before, 0):
        return Category.IMPROVEMENT
    return Category.CHANGED


# --- comparing -------------------------------------------------------------------------------------------------


V1_OPTIONS = {"cgroup.memory": ("MEMCG_V1", "memory.v1"), "cgroup.cpuset": ("CPUSETS_V1", "cpuset.v1")}


def _explain_with_config(name: str, before: Value, after: Value, config: kconfig.KernelConfig | None) -> str:
    """A controller lost on a v1 host is said in the config's words where the config is the cause."""
    option = V1_OPTIONS.get(name)
    if option and after == "none" and config is not None and config.value(option[0]) == "n":
        return f"{name}: {before!r} -> {after!r}: {CONFIG_EXPLAIN[option[1]]}"
    return explain_feature(name, before, after)


def compare(
    baseline: Results, candidate: Results, candidate_config: kconfig.KernelConfig | None = None
) -> list[Finding]:
    """The results' diff of the two runs, sorted and explained, in the candidate's cell order.

    A pair where a cell is missing or has an infra error is not compared: the verdict says so. Only
    what the candidate measured counts: a feature only the baseline has, or a test that ran in one run
    only, is a difference of suites, not of kernels.
    """
    # One kernel on each side (a qualify run): cells pair by flavour; otherwise by cell id.
    one_kernel_each = (
        len({c.kernel for c in baseline.cells}) == 1 and len({c.kernel for c in candidate.cells}) == 1
    )
    by: PairBy = "flavour" if one_kernel_each else "id"
    order = {cell.id: index for index, cell in enumerate(candidate.cells)}
    found: list[Finding] = []
    for old, new in sorted(_comparable(pairs(baseline, candidate, by)), key=lambda cells: order[cells[1].id]):
        for change in cell_changes(new.flavour, old, new):
            finding = _finding(change, new, candidate_config)
            if finding is not None:
                found.append(finding)
    return sorted(found, key=lambda finding: finding.kind != "fault")  # the kernel's own faults first


def _comparable(paired: list[Pair]) -> list[tuple[Cell, Cell]]:
    return [
        (pair.baseline, pair.candidate)
        for pair in paired
        if pair.baseline is not None
        and pair.candidate is not None
        and pair.baseline.infra_error is None
        and pair.candidate.infra_error is None
    ]


def _finding(change: Change, new: Cell, config: kconfig.KernelConfig | None) -> Finding | None:
    before, after = change.before, change.after
    measured: Mapping[str, Value] = new.features
    if change.kind is ChangeKind.FAULT:
        return _fault_finding(change, new)
    if change.kind is ChangeKind.FEATURE and change.key in measured:
        explanation = _explain_with_config(change.key, before, after, config)
        return Finding(
            classify(before, after), change.flavour, "feature", change.key, before, after, explanation
        )
    if change.kind is ChangeKind.TEST and before is not None and after is not None:
        group, _, name = change.key.partition("::")
        was, now = str(before), str(after)
        return Finding(
            classify_test(was, now),
            change.flavour,
            "test",
            change.key,
            was,
            now,
            explain_test(group, name, was, now),
        )
    return None


def _fault_finding(change: Change, new: Cell) -> Finding:
    """A fault in the candidate only is a regression; in the baseline only, an improvement."""
    if change.after is None:
        return Finding(
            Category.IMPROVEMENT, change.flavour, "fault", change.key, change.before, None,
            f"{change.before}: the baseline's kernel had this fault, the candidate's has not",
        )  # fmt: skip
    fault = next(fault for fault in new.faults if fault.title == change.key)
    explanation = f"{fault.headline} ({fault.confirmation}); the baseline's kernel has no such fault"
    return Finding(
        Category.REGRESSION, change.flavour, "fault", change.key, None, fault.headline, explanation
    )


def compare_configs(baseline: kconfig.KernelConfig, candidate: kconfig.KernelConfig) -> list[Finding]:
    """What the configs say, flavour or no flavour: the v1 controllers above all."""
    before, after = fromconfig.features(baseline), fromconfig.features(candidate)
    found = []
    for name in ("memory.v1", "cpuset.v1"):
        was, now = (
            before.cgroups.extras[name].status.value == "ok",
            after.cgroups.extras[name].status.value == "ok",
        )
        if was != now:
            explanation = CONFIG_EXPLAIN[name] if was else f"{name}: now built"
            category = Category.CHANGED if was else Category.IMPROVEMENT
            found.append(Finding(category, "config", "config", name, was, now, explanation))
    return found


def verdict(findings: list[Finding], *runs: Results) -> int:
    """The results' one verdict: a regression is a failure, a cell with an infra error undecided."""
    statuses = [Status.FAIL for finding in findings if finding.category is Category.REGRESSION]
    statuses += [Status.INFRA_ERROR for results in runs for cell in results.cells if cell.infra_error]
    return reduce(statuses)


# --- running the suite ------------------------------------------------------------------------------------------


# What the suite's pytest run imports, by the package that provides it: the [compat] extra.
SUITE_MODULES = {"pytest": "pytest", "xdist": "pytest-xdist", "pytest_timeout": "pytest-timeout",
                 "paramiko": "paramiko", "testinfra": "pytest-testinfra"}  # fmt: skip


class SuiteUnavailable(CompatError):
    """The compat suite cannot start: a package it needs is not installed."""


def check_suite_modules() -> None:
    from importlib.util import find_spec

    missing = [package for module, package in SUITE_MODULES.items() if find_spec(module) is None]
    if missing:
        raise SuiteUnavailable(
            f"the compat suite needs {', '.join(missing)}, not installed for {sys.executable}",
            "pip install 'kcompat[compat]'",
        )


def run_suite(
    kernel: str, flavours: tuple[str, ...], out: Path, append: str = "", inject: str = "", smp: int = 0
) -> Results:
    """The compat suite on kernel in each flavour (append: more boot parameters; inject: a real kernel
    fault, KIND@TEST; smp: vCPUs, 0 for the suite's default); results from out/results.json."""
    check_suite_modules()  # else pytest fails to start and all that is said is that results.json is missing
    label, mapping = (
        (kernel, "")
        if kernel in kernel_catalogue.load_catalogue().ids
        else ("custom", f"custom={Path(kernel).absolute()}")
    )
    cells = ",".join(f"{label}-{flavour}" for flavour in flavours)
    argv = [sys.executable, "-m", "pytest", str(REPO / "compat" / "tests"), "-p", "no:cacheprovider", "-q",
            "-n", "2", "--cells", cells, "--reports", str(out)]  # fmt: skip
    argv += ["--kernel-map", mapping] if mapping else []
    argv += ["--append", append] if append else []
    argv += ["--inject-fault", inject] if inject else []
    argv += ["--smp", str(smp)] if smp else []
    try:
        run(argv, cwd=REPO)
    except CommandError as failure:
        if failure.returncode not in (1,):  # 1: tests failed, which the comparison reads
            raise
    return schema.load(out / "results.json")


def baseline_run(baseline: str, flavours: tuple[str, ...], out: Path, smp: int = 0) -> Results:
    """Cached by the baseline's package version, the suite's version and the vCPUs."""
    entry = kernel_catalogue.load_lock().get(baseline)
    version = [(package.name, package.version) for package in entry.packages] if entry else baseline
    cached = (
        cache_root()
        / "baselines"
        / key(version, schema.SUITE_VERSION, flavours, _suite_digest(), smp)
        / "results.json"
    )
    if cached.exists():
        return schema.load(cached)
    results = run_suite(baseline, flavours, out, smp=smp)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(schema.dump(results))
    return results


def _suite_digest() -> str:
    from compat.images.cache import file_digest

    harness = [*(REPO / "compat" / "harness").glob("*.py"), REPO / "compat" / "faults.py"]
    files = (
        sorted((REPO / "compat" / "tests").glob("*.py"))
        + sorted(harness)
        + sorted((REPO / "runtime").rglob("*.py"))
    )
    return key([file_digest(path) for path in files])


def config_of(kernel: str) -> kconfig.KernelConfig:
    tree = kernels.resolve(kernel)
    if tree.config is None:
        raise kernel_catalogue.KernelError(
            f"{kernel} has no kernel config",
            "qualify a kernel package that ships its config (/boot/config-*)",
        )
    try:
        return kconfig.load(tree.config)
    except kconfig.ConfigError as exc:
        raise kernel_catalogue.KernelError(f"{kernel}: {exc}", exc.hint) from exc


# --- the report ------------------------------------------------------------------------------------------------

TITLES = {
    Category.REGRESSION: "Regressions",
    Category.IMPROVEMENT: "Improvements",
    Category.CHANGED: "Changed behaviour",
}
WORDS = {
    EXIT_PASS: "QUALIFIED",
    EXIT_FAIL: "REGRESSIONS",
    EXIT_UNDECIDED: "COULD NOT DECIDE (infrastructure errors)",
}


def markdown(
    code: int, candidate: str, baseline: str, findings: list[Finding], runs: dict[str, Results]
) -> str:
    lines = [f"# Kernel qualification: {candidate} against {baseline}", "", f"**Verdict: {WORDS[code]}**", ""]
    for category in Category:
        chosen = [f for f in findings if f.category is category]
        title = TITLES[category]
        lines.append(f"## {title} ({len(chosen)})" if chosen else f"## {title}: none")
        lines += [f"- [{f.where}] {f.explanation}" for f in chosen]
        lines.append("")
    for label, results in runs.items():
        lines += [f"## The {label} matrix", "", markdown_matrix.render(results).split("\n", 1)[-1], ""]
    return "\n".join(lines)


def write(
    directory: Path,
    code: int,
    candidate: str,
    baseline: str,
    findings: list[Finding],
    runs: dict[str, Results],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = markdown(code, candidate, baseline, findings, runs)
    (directory / "qualify.md").write_text(text)
    document = {"verdict": WORDS[code], "exit_code": code, "candidate": candidate, "baseline": baseline,
                "findings": [asdict(f) for f in findings]}  # fmt: skip
    (directory / "qualify.json").write_text(json.dumps(document, indent=2, default=str))
    body = "".join(f"<li>[{f.where}] {_escape(f.explanation)}</li>" for f in findings)
    (directory / "qualify.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>qualify {_escape(candidate)}</title>"
        f"<h1>{_escape(candidate)} against {_escape(baseline)}: {WORDS[code]}</h1><ul>{body}</ul>"
        + "".join(html_matrix.render(results).split("<body>", 1)[-1] for results in runs.values())
    )


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


# --- is the suite sensitive enough? ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    """A known regression put into the baseline's run: a boot parameter that takes something away, or
    a real kernel fault set off during a test (compat/harness/inject.py). flags is what the comparison
    must name: a feature key, a test's key, or the fault's type."""

    name: str
    flavour: str
    flags: str
    parameter: str = ""
    fault: str = ""  # KIND@TEST

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", self.name).strip("-")


def _knob(parameter: str, flavour: str, flags: str) -> Injection:
    return Injection(parameter, flavour, flags, parameter=parameter)


def _fault(kind: str, flags: FaultType) -> Injection:
    spec = f"{kind}@{FAULT_TARGET}"
    return Injection(f"--inject-fault {spec}", "v2", flags.value, fault=spec)


FAULT_TARGET = "test_the_same_limits_run_or_are_refused_with_the_reason"  # an early test of every cell
INJECTIONS = (
    _knob("cgroup_disable=memory", "v2", "cgroup.memory"),
    _knob("sysctl.user.max_user_namespaces=0", "v2", "userns.root"),
    _knob("module_blacklist=overlay", "v2", "overlay.mountable"),
    _knob("cgroup_no_v1=all", "v1", "cgroup.memory"),
    _knob("psi=0", "v2", "psi"),
    _knob("cgroup_disable=pids", "v2", "cgroups::test_pids_limit_stops_forks"),
    _knob("cgroup_disable=cpuset", "v2", "cgroup.cpuset"),
    _knob("sysctl.kernel.unprivileged_userns_clone=0", "v2", "userns.unprivileged"),  # Debian's own knob
    _fault("panic", FaultType.PANIC),
    _fault("warn", FaultType.WARNING),
    _fault("hang", FaultType.HUNG_TASK),
    _fault("lockup", FaultType.SOFT_LOCKUP),
)


SELF_CHECK_WORKERS = 2  # injected runs side by side, as the matrix runs its cells


def self_check(baseline: str, out: Path) -> tuple[int, list[str]]:
    """Run the baseline with each known regression injected; each must be flagged: a knob by its
    feature or test, a fault by a fault regression of its type."""
    from concurrent.futures import ThreadPoolExecutor

    clean = baseline_run(baseline, tuple(sorted({i.flavour for i in INJECTIONS})), out / "baseline")

    def injected_run(injection: Injection) -> Results:
        return run_suite(
            baseline,
            (injection.flavour,),
            out / injection.slug,
            append=injection.parameter,
            inject=injection.fault,
        )

    with ThreadPoolExecutor(SELF_CHECK_WORKERS) as pool:
        runs = list(pool.map(injected_run, INJECTIONS))
    lines, detected = [], 0
    for injection, injected in zip(INJECTIONS, runs, strict=True):
        findings = [f for f in compare(clean, injected) if f.category is Category.REGRESSION]
        hit = _flagged(injection, findings, injected)
        detected += hit
        named = ", ".join(sorted({f.key for f in findings})) or "nothing"
        lines.append(
            f"{'detected' if hit else 'MISSED'}: {injection.name} on {injection.flavour} (flagged: {named})"
        )
    lines.append(f"{detected}/{len(INJECTIONS)} injected regressions detected")
    return detected, lines


def _flagged(injection: Injection, findings: list[Finding], injected: Results) -> bool:
    if not injection.fault:
        return any(f.key == injection.flags for f in findings)
    titles = {f.key for f in findings if f.kind == "fault"}
    return any(
        fault.title in titles and fault.type.value == injection.flags
        for cell in injected.cells
        for fault in cell.faults
    )
