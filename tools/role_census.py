#!/usr/bin/env python3
"""The public-role census: what share of the tasks of real Ansible roles
deployer loads.

    tools/role_census.py DEPLOYER_BINARY ROLE_DIR...

Each ROLE_DIR is a role checked out outside the repository (the README lists
the roles and commits). The roles are copied to a scratch project with one
playbook per role, and `deployer lint --format json` runs on it. lint stops
at the first load error of a file, so the census repeats: every task an
error-level finding points at is counted as not loading and replaced, in the
copy, by `meta: noop`, until lint finds no more. A task is any entry of a
task list in tasks/ or handlers/ (a block's own entry is not counted; the
tasks in it are). Prints one line per role and the blocking messages, most
frequent first.
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

TASK_DIRS = ("tasks", "handlers")
# Findings that say deployer cannot load the task (the rest are conventions).
LOAD_RULES = {"load-error", "yaml-syntax", "yaml-duplicate-key", "jinja-syntax",
              "jinja-unknown-filter", "jinja-unknown-test", "jinja-unknown-lookup"}


def is_load_finding(f):
    rule = f.get("rule", "")
    return f.get("severity") == "error" and (rule in LOAD_RULES or rule.startswith("schema-"))
SECTIONS = ("block", "rescue", "always")


def task_spans(path):
    """(start_line, end_line, is_block) of every task mapping in a task file, 1-based."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    out = []

    def walk_list(node):
        if not isinstance(node, yaml.SequenceNode):
            return
        for item in node.value:
            if not isinstance(item, yaml.MappingNode):
                continue
            keys = {k.value: v for k, v in item.value if isinstance(k, yaml.ScalarNode)}
            is_block = "block" in keys
            last = last_line(item) + 1
            out.append((item.start_mark.line + 1, max(last, item.start_mark.line + 1),
                        is_block, item.start_mark.column))
            for s in SECTIONS:
                if s in keys:
                    walk_list(keys[s])

    walk_list(root)
    return out


def last_line(node):
    """The 0-based line of a node's last character: a block collection ends
    with its last child; a scalar or flow collection where its end mark says
    (the start of the next line for a block scalar)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return last_line(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return last_line(node.value[-1])
    m = node.end_mark
    return m.line - 1 if m.column == 0 and m.line > node.start_mark.line else m.line


def task_files(role):
    for d in TASK_DIRS:
        base = os.path.join(role, d)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".yml", ".yaml")):
                    yield os.path.join(dirpath, f)


def neutralise(path, start, last, col):
    """Replaces the task at lines start..last (1-based, inclusive) by
    `meta: noop` at the same column."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    first = lines[start - 1]
    lines[start - 1] = first[:col] + "meta: noop"
    del lines[start:last]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    deployer, roles = os.path.abspath(sys.argv[1]), sys.argv[2:]
    work = tempfile.mkdtemp(prefix="deployer-census-")
    proj = os.path.join(work, "proj")
    os.makedirs(os.path.join(proj, "playbooks"))
    names = []
    for r in roles:
        name = os.path.basename(os.path.normpath(r))
        names.append(name)
        shutil.copytree(r, os.path.join(proj, "roles", name), symlinks=True)
        with open(os.path.join(proj, "playbooks", f"{name}.yml"), "w") as f:
            f.write(f"- hosts: all\n  become: true\n  roles:\n    - {name}\n")
    totals = {}
    for name in names:
        role = os.path.join(proj, "roles", name)
        totals[name] = sum(
            sum(1 for s in task_spans(p) if not s[2]) for p in task_files(role))
    failed = collections.Counter()  # role -> tasks that do not load
    reasons = collections.Counter()
    where = {}
    other = []
    for _ in range(200):
        out = subprocess.run([deployer, "lint", "--format", "json", "--color", "never"],
                             cwd=proj, capture_output=True, text=True)
        try:
            findings = json.loads(out.stdout)["findings"]
        except (ValueError, KeyError):
            sys.exit(f"lint gave no JSON: {out.stdout[:500]}\n{out.stderr[:2000]}")
        errors = [f for f in findings if is_load_finding(f)]
        if not errors:
            break
        progressed = False
        touched = set()
        for e in errors:
            path = os.path.join(proj, e.get("file") or "")
            line = e.get("line") or 0
            rel = os.path.relpath(path, os.path.join(proj, "roles"))
            role = rel.split(os.sep)[0]
            if path in touched:
                continue  # one per file and pass: line numbers move
            spans = [s for s in task_spans(path) if s[0] <= line <= s[1]
                     and not s[2]] if os.path.isfile(path) else []
            if not spans or role not in totals:
                other.append(f"{rel}:{line}: [{e.get('rule')}] {e['message']}")
                continue
            start, end, _, col = max(spans, key=lambda s: s[0])
            failed[role] += 1
            touched.add(path)
            msg = re.sub(r" \((did you mean|deployer runs:).*\)$", "", e["message"]).strip()
            reasons[msg] += 1
            where.setdefault(msg, f"{rel}:{start}")
            neutralise(path, start, end, col)
            progressed = True
        if not progressed:
            break
    total = sum(totals.values())
    bad = sum(failed.values())
    for name in names:
        t = totals[name]
        b = failed[name]
        print(f"{name:28} {t - b:4} of {t:4} tasks load")
    print(f"TOTAL {total - bad} of {total} tasks load ({100.0 * (total - bad) / max(total, 1):.1f}%)")
    print("\nWhat blocks the rest (findings, most frequent first):")
    for msg, n in reasons.most_common():
        print(f"  {n:3}  {msg}  (e.g. {where[msg]})")
    if other:
        print("\nErrors outside any task (not counted against a task):")
        for o in other:
            print(f"  {o}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
