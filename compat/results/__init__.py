"""Qualification results: the run's results JSON is the source of truth, everything else is made from it.

The harness (compat/harness/results.py) collects one run into the model and writes its results JSON
(docs/compat-results.md). From it come the JUnit XML of each cell, the Markdown and HTML matrices, the
terminal table, the changes between two runs and the exit code, so a run can be rendered again later:

    python3 -m compat.results RESULTS.json [--out DIR]
    python3 -m compat.results --diff BASELINE.json CANDIDATE.json

The modules, each one concern:

- model: the frozen records (Results, Cell, Case, InfraError) and ReportError.
- schema: the JSON read (every field checked) and written; SCHEMA and SUITE_VERSION.
- status: a status per matrix entry and cell, and the one verdict with the named exit codes.
- junit, markdown, html, terminal: one renderer each.
- diff: cells of two runs paired and compared (`compat qualify` builds on it).
- files: the reports directory. __main__: the command line.

The verdict, the same for a compat run and for `compat qualify`: a failure (a failing test, a feature
not as expected, a regression against the baseline) anywhere exits 1, even beside an infra error in
another cell, so a known failure is never hidden by a VM that did not come up; an infra error and no
failure exits 2, "could not decide"; otherwise 0.
"""
