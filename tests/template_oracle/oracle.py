#!/usr/bin/env python3
"""The template oracle: renders every case of tests/template_oracle/cases/*.yml
with ansible-core's own Templar and writes what Ansible gives to
tests/template_oracle/expected.json (or checks that file with --check).

Run with the CI venv (ansible-core 2.19.14):
    /opt/deployer-ci/venv/bin/python tests/template_oracle/oracle.py          # regenerate
    /opt/deployer-ci/venv/bin/python tests/template_oracle/oracle.py --check  # CI: fail if stale

tests/template_oracle.rs renders the same cases with deployer and compares.

A case file is YAML:

    vars:                  # variables of every case in the file, as in a vars file
      x: 1                 # (strings are templates, rendered lazily)
    cases:
      - "{{ x }}"                        # a module argument / variable value (native types)
      - t: "{{ y }}\\n"                  # the same, with variables of its own
        vars: {y: 2}
      - file: "{{ x }}\\n"               # a file rendered by the template module
      - when: "x == 1"                   # a `when:` condition
      - t: "{{ nope }}"                  # Ansible fails: deployer must fail too, naming `nope`
        err: nope

A file may also have `hosts:` (host name -> inventory variables): its cases
then see `hostvars` of an inventory of those hosts, Ansible's own HostVars.

One Python process renders every case; nothing here talks to a host.
"""
import datetime
import json
import os
import sys
import tempfile

import yaml

# Deprecation notices (e.g. for `when: "{{ x }}"`) are not results: keep CI output quiet.
os.environ.setdefault("ANSIBLE_DEPRECATION_WARNINGS", "False")
# Cases with `hosts:` build an inventory of their own (no inventory source).
os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")

from ansible.module_utils.datatag import native_type_name
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar, trust_as_template
from ansible._internal._templating import _template_vars
from ansible.inventory.manager import InventoryManager
from ansible.plugins.loader import init_plugin_loader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")
EXPECTED = os.path.join(HERE, "expected.json")
# The template module's `src` and `dest` in file cases (template_path,
# template_destpath); the file itself goes to a temporary directory.
TEMPLATE_DIR = tempfile.mkdtemp(prefix="deployer-template-oracle-")
TEMPLATE_NAME = "case.j2"
TEMPLATE_DEST = "/etc/oracle.conf"


def trust(o):
    """Strings in vars files are templates (as Ansible loads them from YAML)."""
    if isinstance(o, str):
        return trust_as_template(o)
    if isinstance(o, dict):
        return {k: trust(v) for k, v in o.items()}
    if isinstance(o, list):
        return [trust(v) for v in o]
    return o


def plain(o):
    """Ansible's tagged/lazy values as plain Python values."""
    if isinstance(o, bool):
        return bool(o)
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        return float(o)
    if isinstance(o, str):
        return str.__str__(o)
    if isinstance(o, dict):
        return {plain(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    return o


def load_yaml(text, name):
    return yaml.load(text, Loader=AnsibleLoader) if text.strip() else None


def render(kind, src, variables):
    loader = DataLoader()
    if kind == "t":
        templar = Templar(loader=loader, variables=variables)
        value = templar.template(trust_as_template(src))
        return {"type": native_type_name(value), "repr": repr(plain(value))}
    if kind == "when":
        templar = Templar(loader=loader, variables=variables)
        value = templar.evaluate_conditional(trust_as_template(src))
        return {"type": native_type_name(value), "repr": repr(plain(value))}
    if kind == "file":
        # What the template action plugin does (plugins/action/template.py).
        path = os.path.join(TEMPLATE_DIR, TEMPLATE_NAME)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(src)
        temp_vars = dict(variables)
        temp_vars.update(_template_vars.generate_ansible_template_vars(
            path=TEMPLATE_NAME,
            fullpath=path,
            dest_path=TEMPLATE_DEST,
            include_ansible_managed="ansible_managed" not in temp_vars,
        ))
        templar = Templar(loader=loader, variables=temp_vars)
        with open(path, encoding="utf-8", newline="") as f:
            data = trust_as_template(f.read())
        value = templar.template(data, escape_backslashes=False)
        if value is None:
            value = ""
        # to_bytes(value) of the action plugin: str() of a non-string.
        return {"text": value if isinstance(value, str) else str(value)}
    raise ValueError(f"unknown case kind {kind}")


def cases():
    for name in sorted(os.listdir(CASES)):
        if not name.endswith(".yml"):
            continue
        with open(os.path.join(CASES, name), encoding="utf-8") as f:
            doc = load_yaml(f.read(), name) or {}
        file_vars = doc.get("vars") or {}
        for i, case in enumerate(doc.get("cases") or []):
            if isinstance(case, str):
                case = {"t": case}
            kinds = [k for k in ("t", "file", "when") if k in case]
            if len(kinds) != 1:
                raise SystemExit(f"{name} case {i}: needs exactly one of t, file, when: {case!r}")
            kind = kinds[0]
            variables = dict(file_vars)
            variables.update(case.get("vars") or {})
            # As the VariableManager does: `vars` is all of them.
            variables["vars"] = dict(variables)
            if doc.get("hosts"):
                variables["hostvars"] = ("hosts", doc["hosts"])
            yield f"{name}#{i}", kind, str.__str__(case[kind]), variables


def hostvars_of(hosts):
    """Ansible's own `hostvars` of an inventory of these hosts (in `all`)."""
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[])
    for name, host_vars in hosts.items():
        inventory.add_host(name, group="all")
        host = inventory.get_host(name)
        for k, v in (host_vars or {}).items():
            host.set_variable(k, trust(v))
    manager = VariableManager(loader=loader, inventory=inventory)
    return HostVars(inventory=inventory, variable_manager=manager, loader=loader)


def main():
    # As ansible-playbook does: collection plugins (community.general's
    # json_query, reached by its short name through ansible-core's routing).
    init_plugin_loader()
    out = []
    for cid, kind, src, variables in cases():
        entry = {"id": cid, "kind": kind, "src": src}
        hosts = variables.pop("hostvars", None)
        variables = trust(variables)
        if hosts is not None:
            variables["hostvars"] = hostvars_of(hosts[1])
        try:
            entry.update(render(kind, src, variables))
            entry["ok"] = True
        except Exception as ex:  # Ansible's failure is the expected result
            entry["ok"] = False
            entry["error"] = f"{type(ex).__name__}: {ex}"
        out.append(entry)
    os.unlink(os.path.join(TEMPLATE_DIR, TEMPLATE_NAME)) if os.path.exists(os.path.join(TEMPLATE_DIR, TEMPLATE_NAME)) else None
    os.rmdir(TEMPLATE_DIR)
    text = json.dumps(out, indent=1, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        with open(EXPECTED, encoding="utf-8") as f:
            if f.read() != text:
                sys.exit(f"{EXPECTED} is stale: regenerate it with {sys.argv[0]}")
        print(f"template oracle: {len(out)} cases, {EXPECTED} is current")
        return
    with open(EXPECTED, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"template oracle: {len(out)} cases written to {EXPECTED}", file=sys.stderr)


if __name__ == "__main__":
    main()
