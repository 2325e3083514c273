#!/usr/bin/env python3
"""Summarises a ginkgo JSON report of critest (-ginkgo.json-report): counts, then each failing
spec with the message critest printed, then the specs that skipped themselves and why.
With --benchmark-dir, prints the benchmark figures (critest -benchmark -benchmarking-output-dir)
as medians and percentiles per operation. Exit status: 1 if any spec failed, else 0; with
--peer NAME (a run against another runtime, for comparison: scripts/critest.sh --peer) always 0.

    report.py REPORT.json [--skips skips.txt] [--known-failures FILE] [--benchmark-dir DIR]
              [--peer NAME] [--max-lines N]
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

BAD = {"failed", "panicked", "timedout", "interrupted", "aborted", "INVALID SPEC STATE"}


def full_name(spec):
    return " ".join([t for t in spec.get("ContainerHierarchyTexts") or [] if t] + [spec.get("LeafNodeText", "")]).strip()


def short_location(loc):
    name = loc.get("FileName", "")
    name = re.sub(r".*/sigs\.k8s\.io/cri-tools@[^/]+/", "", name)
    return f"{name}:{loc.get('LineNumber', '?')}" if name else "?"


def trim(lines):
    """Drops gomega's dumps of Go values (a "{" line to its matching "}"): the error line above
    them says it all."""
    out, closing = [], None
    for line in lines:
        if closing is not None:
            if line == closing:
                closing = None
            continue
        if line.strip() == "{":
            closing = line.replace("{", "}")
            continue
        out.append(line)
    return out


def load_skips(path):
    skips = []
    if path and os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line and not line.startswith("#"):
                regex, _, reason = line.partition(" | ")
                skips.append((re.compile(regex.strip()), reason.strip()))
    return skips


def percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def benchmarks(directory, specs):
    print("\n== benchmark figures (ms) ==")
    print(f"{'benchmark':<26} {'operation':<32} {'n':>4} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}")
    for path in sorted(glob.glob(f"{directory}/*.json")):
        with open(path) as f:
            data = json.load(f)
        name = os.path.basename(path).replace("_benchmark_data.json", "").replace("_data.json", "")
        ops = data.get("operationsNames") or []
        points = data.get("datapoints") or []
        for i, op in enumerate(ops):
            ms = [p["operationsDurationsNs"][i] / 1e6 for p in points if len(p.get("operationsDurationsNs") or []) > i]
            if ms:
                print(f"{name:<26} {op:<32} {len(ms):>4} {statistics.median(ms):>9.2f} {percentile(ms, 0.9):>9.2f} "
                      f"{min(ms):>9.2f} {max(ms):>9.2f}")
        whole = [(p["endTime"] - p["startTime"]) / 1e6 for p in points if "endTime" in p]
        if whole:
            print(f"{name:<26} {'(whole sample)':<32} {len(whole):>4} {statistics.median(whole):>9.2f} "
                  f"{percentile(whole, 0.9):>9.2f} {min(whole):>9.2f} {max(whole):>9.2f}")
    # gmeasure experiments attached to the report (e.g. "create PodSandbox and container").
    for spec in specs:
        for entry in spec.get("ReportEntries") or []:
            value = (entry.get("Value") or {}).get("AsJSON")
            if not value:
                continue
            try:
                experiment = json.loads(value)
            except ValueError:
                continue
            for m in experiment.get("Measurements") or []:
                durations = [d / 1e6 for d in m.get("Durations") or []]
                if durations:
                    print(f"{experiment.get('Name', entry.get('Name', '?')):<26} {m.get('Name', '?')[:32]:<32} {len(durations):>4} "
                          f"{statistics.median(durations):>9.2f} {percentile(durations, 0.9):>9.2f} {min(durations):>9.2f} "
                          f"{max(durations):>9.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--skips")
    parser.add_argument("--known-failures", help="specs that fail for a reason tracked elsewhere (same format as skips)")
    parser.add_argument("--benchmark-dir")
    parser.add_argument("--peer", help="the report is of another runtime (e.g. containerd), for comparison: "
                        "the summary names it and the exit status is 0 whatever failed")
    parser.add_argument("--max-lines", type=int, default=12)
    args = parser.parse_args()

    with open(args.report) as f:
        suites = json.load(f)
    specs = [s for suite in suites for s in suite.get("SpecReports") or []]
    skips = load_skips(args.skips)

    passed, failed, listed, unselected, self_skipped, other = [], [], [], [], [], []
    for spec in specs:
        state, kind = spec.get("State"), spec.get("LeafNodeType")
        if kind != "It":
            if state in BAD:
                failed.append(spec)  # a failing BeforeSuite/AfterSuite counts
            continue
        if state == "passed":
            passed.append(spec)
        elif state in BAD:
            failed.append(spec)
        elif state == "skipped":
            message = (spec.get("Failure") or {}).get("Message", "")
            if message:
                self_skipped.append(spec)
            elif any(rx.search(full_name(spec)) for rx, _ in skips):
                listed.append(spec)
            else:
                unselected.append(spec)  # -ginkgo.focus, or the other mode's (benchmark) specs
        else:
            other.append(spec)

    ran = len(passed) + len(failed)
    total = ran + len(listed) + len(unselected) + len(self_skipped) + len(other)
    print(f"\n== critest summary{f' ({args.peer}, for comparison)' if args.peer else ''} ==")
    print(f"ran {ran} of {total} specs: {len(passed)} passed, {len(failed)} failed, "
          f"{len(self_skipped)} skipped themselves, {len(listed)} skipped by tests/critest/skips.txt, "
          f"{len(unselected)} not selected (focus, or the other mode's specs)"
          + (f", {len(other)} pending/other" if other else ""))

    if failed:
        print(f"\n== {len(failed)} failing specs ==")
        for spec in sorted(failed, key=full_name):
            failure = spec.get("Failure") or {}
            where = short_location(failure.get("Location") or {})
            print(f"\n[FAIL] {full_name(spec) or spec.get('LeafNodeType')}  ({spec.get('State')}, {where}, "
                  f"{spec.get('RunTime', 0) / 1e9:.1f} s)")
            lines = trim((failure.get("Message") or failure.get("ForwardedPanic") or "").rstrip().splitlines())
            for line in lines[:args.max_lines]:
                print(f"    {line}")
            if len(lines) > args.max_lines:
                print(f"    ... ({len(lines) - args.max_lines} more lines)")

    if self_skipped:
        print(f"\n== {len(self_skipped)} specs skipped themselves ==")
        reasons = {}
        for spec in self_skipped:
            reason = (spec.get("Failure") or {}).get("Message", "").strip().splitlines()[0]
            reasons.setdefault(reason, []).append(full_name(spec))
        for reason, names in sorted(reasons.items()):
            print(f"  {reason}:")
            for name in sorted(names):
                print(f"    - {name}")

    if listed:
        print(f"\n== {len(listed)} specs skipped by tests/critest/skips.txt ==")
        for spec in sorted(listed, key=full_name):
            name = full_name(spec)
            reason = next((r for rx, r in skips if rx.search(name)), "")
            print(f"  - {name}\n      {reason}")

    if failed:
        print("\nfailing: " + ", ".join(sorted(spec.get("LeafNodeText", "?") for spec in failed)))

    if args.benchmark_dir:
        benchmarks(args.benchmark_dir, specs)

    # Failures with a tracked reason (an open issue) do not fail the run; any other does, and a
    # known failure that now passes is said, so the list shrinks as the issues close.
    known = load_skips(args.known_failures)
    expected = [s for s in failed if any(rx.search(full_name(s)) for rx, _ in known)]
    unexpected = [s for s in failed if s not in expected]
    fixed = [s for s in passed if any(rx.search(full_name(s)) for rx, _ in known)]
    if known:
        print(f"\n== {len(expected)} known failures (tests/critest/known-failures.txt), {len(unexpected)} unexpected ==")
        for spec in sorted(expected, key=full_name):
            name = full_name(spec)
            print(f"  - {name}\n      {next(r for rx, r in known if rx.search(name))}")
        for spec in fixed:
            print(f"  now passing, take it off the list: {full_name(spec)}")
    if args.peer:
        print(f"\n{args.peer}: {len(failed)} failing, listed for comparison (exit status 0 whatever failed)")
        return 0
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
