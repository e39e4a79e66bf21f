"""compat/results/: the results JSON, its statuses and everything rendered from it.

The fixtures in tests/data/reports are results files written by hand in the harness's format: a clean
matrix of four cells (5.10 with its expected absences), a run with one failing test and a kernel panic,
and a baseline and candidate (the same flavours on 6.1 and 6.12) for diff.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from compat.results import diff, files, html, junit, markdown, model, schema, status, terminal
from compat.results.__main__ import main
from compat.results.diff import Change, ChangeKind
from compat.results.model import Case, Outcome, ReportError, Results
from compat.results.status import Status

REPORTS = Path(__file__).parents[1] / "data" / "reports"
FEATURES = [
    "cgroup.mode", "cgroup.memory", "cgroup.cpuset", "userns.root", "userns.unprivileged",
    "overlay.mountable", "overlay.in_userns", "pivot_root.usable", "cgroup.kill", "memory.peak",
]  # fmt: skip
GROUPS = ["adaptation", "cgroups", "detection", "namespaces", "overlay"]
FAILING_TEST = "test_memory_limit_ends_in_an_oom_kill"


def fixture(name: str) -> Results:
    return schema.load(REPORTS / name)


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPORTS / name).read_text())
    return data


@pytest.fixture
def clean() -> Results:
    return fixture("clean.json")


@pytest.fixture
def failing() -> Results:
    return fixture("failing.json")


def cell_of(results: Results, cell_id: str) -> model.Cell:
    (found,) = [cell for cell in results.cells if cell.id == cell_id]
    return found


def with_cell(results: Results, cell_id: str, **changes: Any) -> Results:
    cells = tuple(dataclasses.replace(c, **changes) if c.id == cell_id else c for c in results.cells)
    return dataclasses.replace(results, cells=cells)


def with_message(results: Results, cell_id: str, test: str, message: str) -> Results:
    cell = cell_of(results, cell_id)
    tests = tuple(dataclasses.replace(c, message=message) if c.name == test else c for c in cell.tests)
    return with_cell(results, cell_id, tests=tests)


# --- loading and validation ------------------------------------------------------------------------------


def test_load_reads_the_clean_matrix(clean: Results) -> None:
    assert [cell.id for cell in clean.cells] == ["5.10-v2", "6.1-v2", "6.12-hybrid", "7.x-v2"]
    assert (clean.suite_version, clean.started, clean.duration_seconds, clean.accel) == (
        "0.1.0",
        "2026-11-30T18:00:00Z",
        312.5,
        "tcg",
    )
    old = cell_of(clean, "5.10-v2")
    assert old.release == "5.10.0-32-cloud-amd64"
    assert old.package == "linux-image-5.10.0-32-cloud-amd64 5.10.223-1"
    assert old.boot_seconds == 4.82
    assert list(old.features) == FEATURES
    assert old.features["cgroup.kill"] is False
    assert old.expected["overlay.in_userns"] is False
    assert len(old.tests) == 25
    assert old.tests[0] == Case(
        "test_the_same_limits_run_or_are_refused_with_the_reason", "adaptation", Outcome.PASSED, 0.643
    )


def test_load_reads_an_infra_error(failing: Results) -> None:
    panicked = cell_of(failing, "7.x-v2")
    assert panicked.infra_error is not None
    assert panicked.infra_error.kind is model.InfraKind.BOOT_TIMEOUT
    assert "Run /init as init process" in panicked.infra_error.console_tail
    assert (panicked.release, panicked.boot_seconds, dict(panicked.features)) == ("", None, {})


@pytest.mark.parametrize("name", ["clean.json", "failing.json", "diff-baseline.json", "diff-candidate.json"])
def test_dump_round_trips(name: str) -> None:
    results = fixture(name)
    assert json.loads(schema.dump(results)) == raw(name)
    assert schema.loads(schema.dump(results)) == results


def _set(path: list[str | int], value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _delete(path: list[str | int]) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_set(["schema"], 1), r"^schema: 1 is not supported; this reads schema 2"),
        (_set(["schema"], True), r"^schema: true is not supported"),
        (_delete(["suite_version"]), r"^suite_version: missing"),
        (_set(["started"], "yesterday"), r"^started: 'yesterday' is not an ISO 8601 time"),
        (_set(["duration_seconds"], float("nan")), r"^duration_seconds: expected seconds"),
        (_set(["duration_seconds"], -1), r"^duration_seconds: expected seconds"),
        (_set(["cells"], {}), r"^cells: expected a list"),
        (_set(["cells", 0], []), r"^cells\[0\]: expected an object"),
        (_set(["cells", 1, "id"], "../6.1-v2"), r"^cells\[1\]\.id: '\.\./6\.1-v2' cannot name a file"),
        (_set(["cells", 1, "id"], "5.10-v2"), r"^cells\[1\]\.id: '5\.10-v2' is used by an earlier cell"),
        (_delete(["cells", 2, "flavour"]), r"^cells\[2\]\.flavour: missing \(cell 6\.12-hybrid\)"),
        (_set(["cells", 0, "boot_seconds"], "4.8"), r"^cells\[0\]\.boot_seconds: expected seconds.*\(cell 5\.10-v2\)"),
        (_set(["cells", 0, "console_log"], "/var/log/x.log"), r"^cells\[0\]\.console_log: '/var/log/x\.log' is not relative"),
        (_set(["cells", 1, "features", "cgroup.kill"], 1), r'^cells\[1\]\.features\["cgroup\.kill"\]: expected a string, a boolean or null, got 1'),
        (_delete(["cells", 1, "features", "memory.peak"]), r'^cells\[1\]\.features\["memory\.peak"\]: missing'),
        (_delete(["cells", 1, "expected", "memory.peak"]), r'^cells\[1\]\.expected\["memory\.peak"\]: missing'),
        (_set(["cells", 1, "infra_error"], {"kind": "bad luck", "message": "m", "console_tail": ""}), r"^cells\[1\]\.infra_error\.kind: 'bad luck' is not one of"),
        (_set(["cells", 1, "infra_error"], {"kind": "boot timeout", "console_tail": ""}), r"^cells\[1\]\.infra_error\.message: missing"),
        (_set(["cells", 3, "tests", 4, "outcome"], "pased"), r"^cells\[3\]\.tests\[4\]\.outcome: 'pased' is not one of 'passed', 'failed', 'skipped', 'error', 'expected-absent', 'not-run' \(cell 7\.x-v2\)"),
        (_delete(["cells", 3, "tests", 4, "duration_seconds"]), r"^cells\[3\]\.tests\[4\]\.duration_seconds: missing"),
        (_set(["cells", 3, "tests", 4, "group"], "cgroup.kill"), r"^cells\[3\]\.tests\[4\]\.group: 'cgroup\.kill' is also a feature key"),
    ],
)  # fmt: skip
def test_validation_names_the_bad_field(tmp_path: Path, change: Any, field: str) -> None:
    data = raw("clean.json")
    change(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=rf"^{path}: " + field.removeprefix("^")):
        schema.load(path)


def test_duplicate_test_names_are_refused() -> None:
    data = raw("clean.json")
    tests = data["cells"][0]["tests"]
    tests.append(copy.deepcopy(tests[3]))
    with pytest.raises(
        ReportError, match=r"^cells\[0\]\.tests\[25\]: cgroups::test_pids_limit_stops_forks appears twice"
    ):
        schema.parse(data)


def test_an_infra_cell_may_have_measured_nothing_but_a_booted_one_may_not() -> None:
    data = raw("failing.json")
    schema.parse(data)  # 7.x-v2: infra error, features {} and expected {}
    data["cells"][2]["expected"] = {"cgroup.kill": True}
    schema.parse(data)
    data["cells"][2]["infra_error"] = None
    with pytest.raises(ReportError, match=r'^cells\[2\]\.features\["cgroup\.kill"\]: missing'):
        schema.parse(data)


def test_unknown_keys_are_ignored() -> None:
    data = raw("clean.json")
    data["host"] = "ci-runner-3"
    data["cells"][0]["qemu"] = "8.2.2"
    assert schema.parse(data) == schema.parse(raw("clean.json"))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot read"):
        schema.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": 1,\n  "cells": [}')
    with pytest.raises(ReportError, match=r"broken\.json: not JSON: .*line 2"):
        schema.load(broken)


# --- statuses --------------------------------------------------------------------------------------------


def test_the_clean_matrix_passes_with_its_expected_absences(clean: Results) -> None:
    assert [status.cell_status(cell) for cell in clean.cells] == [Status.PASS] * 4
    old = cell_of(clean, "5.10-v2")
    entries = {column: status.entry(old, column) for column in status.columns(clean)}
    absent = {column for column, shown in entries.items() if shown is Status.EXPECTED_ABSENT}
    assert absent == {"cgroup.kill", "memory.peak", "overlay.in_userns"}
    assert {shown for column, shown in entries.items() if column not in absent} == {Status.PASS}
    new = cell_of(clean, "7.x-v2")
    assert {status.entry(new, column) for column in status.columns(clean)} == {Status.PASS}
    assert status.exit_code(clean) == 0


def test_columns_are_features_then_groups(clean: Results) -> None:
    assert status.feature_columns(clean) == FEATURES
    assert status.group_columns(clean) == GROUPS
    assert status.columns(clean) == FEATURES + GROUPS


@pytest.mark.parametrize(
    ("measured", "wanted", "shown"),
    [
        ("v2", "v2", Status.PASS),
        (True, True, Status.PASS),
        (False, False, Status.EXPECTED_ABSENT),
        (None, None, Status.EXPECTED_ABSENT),
        ("none", "none", Status.EXPECTED_ABSENT),
        ("v1", "v2", Status.FAIL),
        (True, False, Status.FAIL),
        (None, True, Status.FAIL),
        (False, None, Status.FAIL),
    ],
)
def test_feature_entries(clean: Results, measured: Any, wanted: Any, shown: Status) -> None:
    cell = cell_of(clean, "6.1-v2")
    changed = dataclasses.replace(
        cell,
        features={**cell.features, "cgroup.memory": measured},
        expected={**cell.expected, "cgroup.memory": wanted},
    )
    assert status.entry(changed, "cgroup.memory") is shown
    assert status.cell_status(changed) is (Status.FAIL if shown is Status.FAIL else Status.PASS)


def _group(*outcomes: Outcome) -> tuple[Case, ...]:
    return tuple(Case(f"test_{i}", "g", outcome, 0.1) for i, outcome in enumerate(outcomes))


@pytest.mark.parametrize(
    ("outcomes", "shown"),
    [
        ((Outcome.PASSED, Outcome.PASSED), Status.PASS),
        ((Outcome.PASSED, Outcome.EXPECTED_ABSENT), Status.PASS),
        ((Outcome.EXPECTED_ABSENT, Outcome.EXPECTED_ABSENT), Status.EXPECTED_ABSENT),
        ((Outcome.EXPECTED_ABSENT, Outcome.SKIPPED), Status.EXPECTED_ABSENT),
        ((Outcome.PASSED, Outcome.FAILED, Outcome.EXPECTED_ABSENT), Status.FAIL),
        ((Outcome.ERROR, Outcome.PASSED), Status.FAIL),
        ((Outcome.SKIPPED, Outcome.SKIPPED), Status.SKIPPED),
        ((), Status.SKIPPED),
    ],
)
def test_group_entries(clean: Results, outcomes: tuple[Outcome, ...], shown: Status) -> None:
    cell = dataclasses.replace(cell_of(clean, "6.1-v2"), tests=_group(*outcomes))
    assert status.entry(cell, "g") is shown
    assert status.entry(cell, "no-such-group") is Status.SKIPPED


def test_a_failing_test_and_an_infra_error(failing: Results) -> None:
    assert [status.cell_status(cell) for cell in failing.cells] == [
        Status.FAIL,
        Status.PASS,
        Status.INFRA_ERROR,
    ]
    hybrid = cell_of(failing, "6.1-hybrid")
    assert status.entry(hybrid, "cgroups") is Status.FAIL
    assert status.entry(hybrid, "memory.peak") is Status.EXPECTED_ABSENT  # memory stays in v1 on 6.1
    assert status.entry(hybrid, "detection") is Status.PASS
    panicked = cell_of(failing, "7.x-v2")
    assert {status.entry(panicked, column) for column in status.columns(failing)} == {Status.INFRA_ERROR}
    assert status.problems(hybrid) == [
        status.Problem(
            "6.1-hybrid",
            f"cgroups::{FAILING_TEST}",
            "failed",
            cell_of(failing, "6.1-hybrid").tests[2].message,
        )
    ]


def test_exit_codes(failing: Results) -> None:
    assert status.exit_code(failing) == 1
    without_failure = dataclasses.replace(failing, cells=failing.cells[1:])
    assert status.exit_code(without_failure) == 2
    assert status.exit_code(dataclasses.replace(failing, cells=failing.cells[1:2])) == 0


def test_a_failure_beside_an_infra_error_is_a_failure(failing: Results) -> None:
    assert {status.cell_status(cell) for cell in failing.cells} >= {Status.FAIL, Status.INFRA_ERROR}
    assert status.exit_code(failing) == status.EXIT_FAIL
    assert status.reduce([Status.INFRA_ERROR, Status.FAIL, Status.PASS]) == status.EXIT_FAIL
    assert status.reduce([Status.INFRA_ERROR, Status.PASS, Status.EXPECTED_ABSENT]) == status.EXIT_UNDECIDED
    assert status.reduce([Status.PASS, Status.EXPECTED_ABSENT, Status.SKIPPED]) == status.EXIT_PASS
    assert status.reduce([]) == status.EXIT_PASS


def test_summary_line(failing: Results, clean: Results) -> None:
    assert status.summary_line(failing) == "3 cells: 1 pass, 1 fail, 0 kernel crashes, 1 infra error"
    assert status.summary_line(clean) == "4 cells: 4 pass, 0 fail, 0 kernel crashes, 0 infra errors"


# --- JUnit XML -------------------------------------------------------------------------------------------


def test_junit_of_a_clean_cell(clean: Results) -> None:
    suite = ET.fromstring(junit.render(cell_of(clean, "5.10-v2")))
    assert suite.tag == "testsuite"
    assert suite.get("name") == "5.10-v2"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "35",
        "0",
        "0",
        "0",
    )
    cases = suite.findall("testcase")
    assert len(cases) == 35
    assert [case.get("name") for case in cases[:10]] == FEATURES
    assert {case.get("classname") for case in cases} == {"features", *GROUPS}
    noted = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in cases
        if case.find("system-out") is not None
    ]
    assert noted == [
        "features::overlay.in_userns",
        "features::cgroup.kill",
        "features::memory.peak",
        "cgroups::test_cgroup_kill_or_its_absence",
        "detection::test_feature_is_as_expected[overlay.in_userns]",
        "detection::test_feature_is_as_expected[cgroup.kill]",
        "detection::test_feature_is_as_expected[memory.peak]",
    ]
    (kill,) = [case for case in cases if case.get("name") == "test_cgroup_kill_or_its_absence"]
    assert kill.get("time") == "0.536"
    assert float(suite.get("time", "")) == pytest.approx(
        sum(c.duration_seconds for c in cell_of(clean, "5.10-v2").tests)
    )


def test_junit_of_a_failing_cell(failing: Results) -> None:
    cell = cell_of(failing, "6.1-hybrid")
    cell = dataclasses.replace(
        cell,
        features={**cell.features, "cgroup.memory": "v2"},
        tests=(
            *cell.tests,
            Case("test_a", "extra", Outcome.ERROR, 0.2, "fixture 'guest' failed\nsecond line"),
            Case("test_b", "extra", Outcome.SKIPPED, 0.0, "needs kvm"),
        ),
    )
    suite = ET.fromstring(junit.render(cell))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "37",
        "2",
        "1",
        "1",
    )
    failures = {
        case.get("name"): case.find("failure")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert set(failures) == {"cgroup.memory", FAILING_TEST}
    assert failures["cgroup.memory"].get("message") == 'expected "v1", got "v2"'  # type: ignore[union-attr]
    assert "memory.failcnt is 0" in (failures[FAILING_TEST].get("message") or "")  # type: ignore[union-attr]
    (error,) = suite.iter("error")
    assert error.get("message") == "fixture 'guest' failed"
    assert error.text == "fixture 'guest' failed\nsecond line"
    (skipped,) = suite.iter("skipped")
    assert skipped.get("message") == "needs kvm"


def test_junit_of_an_infra_error(failing: Results) -> None:
    suite = ET.fromstring(junit.render(cell_of(failing, "7.x-v2")))
    assert (suite.get("tests"), suite.get("errors"), suite.get("failures")) == ("1", "1", "0")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "boot"
    (error,) = case.findall("error")
    assert error.get("type") == "boot timeout"
    assert error.get("message") == "boot timeout: no KCOMPAT-READY within 180 s"
    assert error.text is not None
    assert error.text.endswith("kcompat: mounting /dev/vda on /sysroot")


def test_junit_survives_control_characters(failing: Results) -> None:
    cell = cell_of(failing, "7.x-v2")
    assert cell.infra_error is not None
    noisy = dataclasses.replace(cell.infra_error, console_tail="\x1b[0mBUG: \x00 at\r\nend\udc80")
    suite = ET.fromstring(junit.render(dataclasses.replace(cell, infra_error=noisy)))
    assert suite.find("testcase/error").text == "\\x1b[0mBUG: \\x00 at\nend\\udc80"  # type: ignore[union-attr]


# --- Markdown and HTML -----------------------------------------------------------------------------------


def test_markdown_matrix(failing: Results) -> None:
    text = markdown.render(failing)
    lines = text.splitlines()
    header = "| cell | release | flavour | boot | status | " + " | ".join([*FEATURES, *GROUPS]) + " |"
    assert header in lines
    rows = [line for line in lines if line.startswith("| [")]
    assert len(rows) == 3
    assert rows[0].startswith(
        "| [6.1-hybrid](consoles/6.1-hybrid.log) | 6.1.0-50-cloud-amd64 | hybrid | 5.2 s | **FAIL** | pass |"
    )
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[5 + FEATURES.index("memory.peak")] == "absent (expected)"
    assert cells[5 + len(FEATURES) + GROUPS.index("cgroups")] == "FAIL"
    assert (
        rows[2]
        == "| [7.x-v2](consoles/7.x-v2.log) |  | v2 | - | **INFRA** | " + " | ".join(["INFRA"] * 15) + " |"
    )
    assert "**3 cells: 1 pass, 1 fail, 0 kernel crashes, 1 infra error**" in lines
    assert (
        f"- **6.1-hybrid** `cgroups::{FAILING_TEST}` failed: AssertionError: the container exited 0" in text
    )
    assert "- **7.x-v2** infra error (boot timeout): no KCOMPAT-READY within 180 s" in lines
    tail_at = lines.index("  console tail:")
    assert lines[tail_at + 1] == "  ```"
    assert lines[tail_at + 3] == "  kcompat: mounting /dev/vda on /sysroot"


def test_markdown_of_a_clean_run_lists_no_failures(clean: Results) -> None:
    text = markdown.render(clean)
    assert text.rstrip().endswith("## Failures, kernel faults and infra errors\n\nNone.")
    assert "| [5.10-v2](consoles/5.10-v2.log) | 5.10.0-32-cloud-amd64 | v2 | 4.8 s |" in text


def test_markdown_escapes_text(failing: Results) -> None:
    hostile = with_message(failing, "6.1-hybrid", FAILING_TEST, "got <script>alert(1)</script> | [x](y)")
    text = markdown.render(hostile)
    assert "<script>" not in text
    assert r"got &lt;script&gt;alert(1)&lt;/script&gt; \| \[x\](y)" in text
    multiline = with_message(failing, "6.1-hybrid", FAILING_TEST, "first\n```\nsecond")
    lines = markdown.render(multiline).splitlines()
    at = lines.index(f"- **6.1-hybrid** `cgroups::{FAILING_TEST}` failed:")
    assert lines[at + 1 : at + 6] == ["  ````", "  first", "  ```", "  second", "  ````"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def test_html_page(failing: Results) -> None:
    text = html.render(failing)
    assert text.startswith("<!DOCTYPE html>\n<html")
    assert text.rstrip().endswith("</html>")
    page = parse_html(text)
    classes = [attrs.get("class") for tag, attrs in page.tags if tag == "td" and attrs.get("class")]
    assert classes[:3] == ["fail cell-status", "pass", "pass"]  # each row starts with the cell's status
    classes = [name for name in classes if name and not name.endswith("cell-status")]
    assert classes.count("fail") == 1
    assert classes.count("infra-error") == 15
    assert classes.count("expected-absent") == 1
    assert classes.count("pass") == 2 * 15 - 2
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links == ["consoles/6.1-hybrid.log", "consoles/6.12-v2.log", "consoles/7.x-v2.log"]
    assert "3 cells: 1 pass, 1 fail, 0 kernel crashes, 1 infra error" in page.text
    assert "td.fail" in text  # the inline style
    pre = text[text.index("<pre>") : text.index("</pre>")]
    assert "kcompat: mounting /dev/vda on /sysroot" in pre


def test_html_escapes_everything(failing: Results) -> None:
    hostile = with_message(failing, "6.1-hybrid", FAILING_TEST, "<script>alert('x')</script> & \"q\"")
    hostile = with_cell(hostile, "6.12-v2", release='6.12"><img src=x onerror=alert(1)>')
    text = html.render(hostile)
    assert "<script>" not in text
    assert "<img" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;" in text
    tags = {tag for tag, _ in parse_html(text).tags}
    assert tags.isdisjoint({"script", "img"})


def test_links_are_relative_to_a_base_and_quoted(clean: Results) -> None:
    spaced = with_cell(clean, "6.1-v2", console_log="consoles/6.1 v2.log")
    assert "[6.1-v2](../run/consoles/6.1%20v2.log)" in markdown.render(spaced, link_base="../run")
    assert 'href="../run/consoles/6.1%20v2.log"' in html.render(spaced, link_base="../run")
    unlinked = with_cell(clean, "6.1-v2", console_log="")
    assert "| 6.1-v2 | 6.1.0-50-cloud-amd64 |" in markdown.render(unlinked)


# --- the terminal ----------------------------------------------------------------------------------------


def test_summary_table(failing: Results) -> None:
    lines = terminal.render(failing).splitlines()
    assert len(lines) == 5
    assert lines[0].split() == ["cell", "release", "boot", "status", "failing"]
    assert lines[1].split() == [
        "6.1-hybrid",
        "6.1.0-50-cloud-amd64",
        "5.2",
        "s",
        "FAIL",
        f"cgroups::{FAILING_TEST}",
    ]
    assert lines[2].split() == ["6.12-v2", "6.12.117+deb13-cloud-amd64", "5.4", "s", "pass"]
    assert lines[3].split()[:5] == ["7.x-v2", "-", "INFRA", "boot", "timeout:"]
    assert lines[4] == "3 cells: 1 pass, 1 fail, 0 kernel crashes, 1 infra error"
    status_at = lines[0].index("status")
    assert [line[status_at:].split()[0] for line in lines[1:4]] == ["FAIL", "pass", "INFRA"]


# --- diff ------------------------------------------------------------------------------------------------


def test_diff_finds_exactly_the_changes() -> None:
    changes = diff.diff(fixture("diff-baseline.json"), fixture("diff-candidate.json"))
    assert changes == [
        Change("v2", ChangeKind.TEST, "cgroups::test_cpu_quota_shows_throttling", "passed", "failed"),
        Change(
            "v2",
            ChangeKind.TEST,
            "namespaces::test_time_namespace_offsets_the_monotonic_clock",
            None,
            "passed",
        ),
        Change("hybrid", ChangeKind.FEATURE, "cgroup.memory", "v1", "v2"),
        Change("hybrid", ChangeKind.FEATURE, "cgroup.cpuset", "v1", "v2"),
        Change("hybrid", ChangeKind.FEATURE, "memory.peak", False, True),
        Change(
            "hybrid",
            ChangeKind.TEST,
            "detection::test_feature_is_as_expected[memory.peak]",
            "expected-absent",
            "passed",
        ),
        Change("initramfs-root", ChangeKind.CELL, "cell", "6.1-initramfs-root", None),
        Change("v1", ChangeKind.CELL, "cell", None, "6.12-v1"),
    ]
    assert [str(change) for change in changes[2:3] + changes[-2:]] == [
        'hybrid: feature cgroup.memory: "v1" -> "v2"',
        "initramfs-root: only in the baseline (6.1-initramfs-root)",
        "v1: only in the candidate (6.12-v1)",
    ]


def test_diff_of_a_run_with_itself_is_empty() -> None:
    assert diff.diff(fixture("diff-baseline.json"), fixture("diff-baseline.json")) == []


def test_diff_reports_an_infra_error_instead_of_everything_it_hid(failing: Results) -> None:
    booted = fixture("diff-candidate.json")
    panicked = cell_of(failing, "7.x-v2")
    broken = with_cell(
        booted, "6.12-v2", infra_error=panicked.infra_error, features={}, expected={}, tests=()
    )
    assert diff.diff(booted, broken) == [Change("v2", ChangeKind.INFRA, "boot", None, "boot timeout")]


def test_diff_needs_one_cell_per_flavour(clean: Results) -> None:
    with pytest.raises(ReportError, match=r"candidate: cells 5\.10-v2 and 6\.1-v2 are both flavour 'v2'"):
        diff.diff(fixture("diff-baseline.json"), clean)


# --- files and the command line --------------------------------------------------------------------------


def test_write_all(tmp_path: Path, failing: Results) -> None:
    out = tmp_path / "run" / "reports"
    paths = files.write_all(failing, out)
    names = sorted(path.relative_to(out).as_posix() for path in paths)
    assert names == [
        "junit/6.1-hybrid.xml",
        "junit/6.12-v2.xml",
        "junit/7.x-v2.xml",
        "matrix.html",
        "matrix.md",
        "results.json",
    ]
    assert all(path.is_file() for path in paths)
    assert schema.load(out / "results.json") == failing
    assert ET.parse(out / "junit" / "7.x-v2.xml").getroot().get("errors") == "1"
    assert (out / "matrix.md").read_text() == markdown.render(failing)
    assert (out / "matrix.html").read_text() == html.render(failing)


def test_write_all_links_back_to_the_run(tmp_path: Path, failing: Results) -> None:
    files.write_all(failing, tmp_path / "elsewhere" / "out", run_dir=tmp_path / "run")
    assert (
        "[6.12-v2](../../run/consoles/6.12-v2.log)"
        in (tmp_path / "elsewhere" / "out" / "matrix.md").read_text()
    )


def test_cli_renders_and_exits_with_the_run_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([str(REPORTS / "failing.json"), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(terminal.render(fixture("failing.json")))
    assert (out / "results.json").is_file()
    assert "(../" in (out / "matrix.md").read_text()  # consoles stay where the run put them
    assert main([str(REPORTS / "clean.json"), "--out", str(out)]) == 0


def test_cli_never_rewrites_the_results_it_renders(tmp_path: Path) -> None:
    source = tmp_path / "results.json"
    shutil.copyfile(REPORTS / "failing.json", source)
    before = source.read_bytes()
    assert main([str(source)]) == 1
    assert source.read_bytes() == before
    assert (tmp_path / "matrix.html").is_file()
    assert (tmp_path / "junit" / "6.12-v2.xml").is_file()


def test_cli_diff(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--diff", str(REPORTS / "diff-baseline.json"), str(REPORTS / "diff-candidate.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 8
    assert printed[0] == "v2: test cgroups::test_cpu_quota_shows_throttling: passed -> failed"
    assert main(["--diff", str(REPORTS / "diff-baseline.json"), str(REPORTS / "diff-baseline.json")]) == 0
    assert capsys.readouterr().out == "no changes\n"


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 9}')
    assert main([str(bad)]) == status.EXIT_UNUSABLE
    assert "schema: 9 is not supported" in capsys.readouterr().err
    for argv in ([], ["a.json", "--diff", "b.json", "c.json"], ["--diff", "b.json", "c.json", "--out", "d"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == status.EXIT_UNUSABLE


# --- a kernel crash (recorded: 6.1-v2 with --inject-fault panic@test_pids_limit_stops_forks) -----------

CRASH_HEADLINE = (
    "kernel panic during cgroups::test_pids_limit_stops_forks: kernel panic: sysrq triggered crash"
)


@pytest.fixture
def crashed() -> Results:
    return fixture("crashed.json")


def test_a_crashed_cell_is_its_own_status_and_fails_the_run(crashed: Results) -> None:
    (cell,) = crashed.cells
    assert cell.infra_error is None
    assert cell.crash is not None
    assert cell.crash.confirmation == "reproduced 2/2"
    assert status.cell_status(cell) is status.Status.CRASH
    assert status.exit_code(crashed) == status.EXIT_FAIL
    assert status.entry(cell, "cgroup.mode") is status.Status.PASS  # measured before the crash
    assert status.entry(cell, "overlay") is status.Status.NOT_RUN
    assert status.entry(cell, "cgroups") is status.Status.FAIL
    assert status.summary_line(crashed) == "1 cell: 0 pass, 0 fail, 1 kernel crash, 0 infra errors"


def test_every_format_says_kernel_panic_during_the_test_with_title_and_excerpt(crashed: Results) -> None:
    (cell,) = crashed.cells
    excerpt_line = "Kernel panic - not syncing: sysrq triggered crash"
    text = markdown.render(crashed)
    assert f"- **6.1-v2** kernel fault: {CRASH_HEADLINE} (reproduced 2/2; 30 tests not run)" in text
    assert f"  {excerpt_line}" in text.splitlines()
    page = html.render(crashed)
    assert CRASH_HEADLINE in page
    assert excerpt_line in page
    assert '<td class="kernel-crash cell-status">CRASH</td>' in page
    table = terminal.render(crashed)
    assert f"CRASH   {CRASH_HEADLINE}" in table
    assert f"    {excerpt_line}" in table.splitlines()
    suite = ET.fromstring(junit.render(cell))
    failure = next(
        c.find("failure") for c in suite.iter("testcase") if c.get("name") == "test_pids_limit_stops_forks"
    )
    assert failure is not None
    assert failure.get("type") == "kernel panic"
    assert CRASH_HEADLINE in (failure.get("message") or "")
    assert excerpt_line in (failure.text or "")
    assert suite.get("skipped") == "30"


def test_the_tests_a_crash_stopped_are_not_compared(crashed: Results, clean: Results) -> None:
    before = dataclasses.replace(clean, cells=tuple(c for c in clean.cells if c.id == "6.1-v2"))
    changes = diff.diff(before, crashed)
    assert changes[0] == Change(
        "v2", ChangeKind.FAULT, "kernel panic: sysrq triggered crash", None, CRASH_HEADLINE
    )
    assert all(change.after != "not-run" for change in changes)
