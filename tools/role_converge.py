#!/usr/bin/env python3
"""Public roles converged by ansible-playbook and by deployer, compared.

    TESTBED_ID=ID TESTBED_PORT_BASE=PORT tools/role_converge.py DEPLOYER ROLE_DIR...

Run by hand, never in CI: the roles live outside the repository (the README
lists them and their commits) and their packages come from Debian's mirror,
which the testbed hosts reach as the image build does.

For each role: fresh systemd testbed hosts (tests/testbed/up-systemd.sh 2:
sd1 and sd2), a scratch project whose playbook applies the role with the vars
a Debian bookworm user would set (ROLE_VARS below), ansible-playbook on sd1
and deployer on sd2. Then the two hosts' state is compared: packages, users,
groups, unit files and their enabled/active state, crontabs, and every file
under /etc, /usr/local, /opt, /srv, /root, /home, /var/www and the role's own
paths (type, mode, owner, group, sha256 of the content with the host name
replaced, link target), and the per-task `changed` of the two runs. A second
run of each must change nothing. Prints a verdict line per role.
"""
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TB = os.path.join(REPO, "tests", "testbed")
VENV = os.environ.get("DEPLOYER_ANSIBLE_BIN_DIR", "/opt/deployer-ci/venv/bin")
ID = os.environ.get("TESTBED_ID", "tb")
HOSTS = {"ansible": "sd1", "deployer": "sd2"}
CONTAINER = {"sd1": f"deployer-{ID}s1", "sd2": f"deployer-{ID}s2"}

# What a user on Debian bookworm would set (the testbed hosts have no
# internet beyond Debian's mirror; the login user `deploy` must keep working).
ROLE_VARS = {
    "ntp": {"ntp_timezone": "Europe/Paris", "ntp_manage_config": True},
    "security": {
        "security_ssh_permit_root_login": "without-password",
        "security_sudoers_passwordless": ["deploy"],
        "security_autoupdate_mail_to": "root@localhost",
    },
    "git": {},
    "redis": {"redis_port": 6380, "redis_maxmemory": "64mb"},
    "nginx": {
        "nginx_remove_default_vhost": True,
        "nginx_vhosts": [{
            "listen": "8080",
            "server_name": "example.test",
            "root": "/var/www/example",
            "index": "index.html",
            "filename": "example.test.conf",
        }],
    },
    "apache": {"apache_listen_port": 8081, "apache_remove_default_vhost": True,
               "apache_mods_enabled": ["rewrite", "headers"]},
    "java": {"java_packages": ["openjdk-17-jre-headless"]},
    "firewall": {},
}
# What a container cannot do that a role's service asks of systemd, set on
# both hosts before the runs (the same file on both, so the comparison keeps
# it). Debian's redis-server.service has PrivateUsers=true, and a user
# namespace cannot be made inside the testbed's container ("Failed to set up
# user namespacing"): redis-server then never starts, under either tool.
HOST_PREP = {
    "redis": "mkdir -p /etc/systemd/system/redis-server.service.d && "
             "printf '[Service]\\nPrivateUsers=false\\n' > /etc/systemd/system/redis-server.service.d/container.conf",
}
# Paths beyond the common ones whose files the comparison covers.
ROLE_PATHS = {
    "redis": ["/var/lib/redis"],
    "nginx": ["/var/lib/nginx"],
    "security": ["/var/lib/fail2ban"],
}
COMMON_PATHS = ["/etc", "/usr/local", "/opt", "/srv", "/root", "/home", "/var/www"]
# Files that differ between any two hosts, whatever ran on them.
EXCLUDE = re.compile(
    r"^(/etc/(hostname|hosts|resolv\.conf|machine-id|mtab|ld\.so\.cache|shadow-?|gshadow-?"
    r"|ssh/ssh_host_.*|\.pwd\.lock|apt/apt\.conf\.d/01autoremove-kernels)"
    r"|/(root|home/[^/]+)/\.(ansible|cache|ssh)(/.*)?"
    r"|/var/lib/fail2ban/fail2ban\.sqlite3"
    r"|/etc/ssl/private/ssl-cert-snakeoil\.key|/etc/ssl/certs/ssl-cert-snakeoil\.pem"
    r"|/etc/ssl/certs/[0-9a-f]{8}\.0|/etc/ssl/certs/java/cacerts"
    r"|/var/lib/redis/dump\.rdb"
    r"|/root/\.deployer.*|/var/lib/deployer(/.*)?|/etc/deployer(/.*)?)$")

SNAPSHOT = r'''
import grp, hashlib, json, os, pwd, stat, subprocess, sys
paths, host = json.loads(sys.argv[1]), sys.argv[2]
def run(*a):
    return subprocess.run(a, capture_output=True, text=True).stdout
out = {}
out["packages"] = sorted(run("dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n").splitlines())
out["users"] = sorted(run("getent", "passwd").splitlines())
out["groups"] = sorted(run("getent", "group").splitlines())
units = {}
for l in run("systemctl", "list-unit-files", "--no-legend", "--no-pager", "--type=service,timer,socket").splitlines():
    p = l.split()
    if len(p) >= 2:
        units[p[0]] = p[1]
for l in run("systemctl", "list-units", "--all", "--no-legend", "--no-pager", "--plain", "--type=service,timer,socket").splitlines():
    p = l.split()
    if len(p) >= 4:
        units[p[0]] = units.get(p[0], "-") + " " + p[2] + "/" + p[3]
out["units"] = units
cron = {}
for d in ("/var/spool/cron/crontabs",):
    if os.path.isdir(d):
        for f in sorted(os.listdir(d)):
            cron[f] = open(os.path.join(d, f), errors="replace").read().split("\n", 3)[-1]
out["crontabs"] = cron
files = {}
def name(f, id):
    try:
        return f(id)[0]
    except KeyError:
        return str(id)
for base in paths:
    if not os.path.lexists(base):
        continue
    for dirpath, dirs, names in os.walk(base):
        dirs.sort()
        for n in [""] + sorted(dirs) + sorted(names):
            p = os.path.join(dirpath, n) if n else dirpath
            if n == "" and dirpath != base:
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            desc = "%o %s %s" % (stat.S_IMODE(st.st_mode), name(pwd.getpwuid, st.st_uid), name(grp.getgrgid, st.st_gid))
            if stat.S_ISLNK(st.st_mode):
                desc = "link -> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                desc = "dir " + desc
            elif stat.S_ISREG(st.st_mode):
                try:
                    data = open(p, "rb").read()
                    desc = "file " + desc + " " + hashlib.sha256(data).hexdigest()[:16]
                except OSError as e:
                    desc = "file " + desc + " unreadable"
            else:
                desc = "other " + desc
            files[p] = desc
out["files"] = files
print(json.dumps(out))
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)


def snapshot(host, paths):
    o = sh(["docker", "exec", "-i", CONTAINER[host], "python3", "-c", SNAPSHOT,
            json.dumps(paths), host])
    if o.returncode != 0:
        sys.exit(f"snapshot of {host}: {o.stderr}")
    s = json.loads(o.stdout)
    s["files"] = {k: v for k, v in s["files"].items() if not EXCLUDE.match(k)}
    return s


def fresh_hosts(prep=None):
    """New sd1 and sd2, with apt's package lists as any Debian server has
    them (the image ships without), and `prep` (HOST_PREP) run on each."""
    o = sh([os.path.join(TB, "up-systemd.sh"), "2"])
    if o.returncode != 0:
        sys.exit(f"up-systemd.sh: {o.stderr[-2000:]}")
    for c in CONTAINER.values():
        o = sh(["docker", "exec", c, "apt-get", "update", "-qq"])
        if o.returncode != 0:
            sys.exit(f"apt-get update on {c}: {o.stderr[-2000:]}")
        if prep:
            o = sh(["docker", "exec", c, "sh", "-c", prep])
            if o.returncode != 0:
                sys.exit(f"host preparation on {c}: {o.stderr[-2000:]}")


def ansible_env(home):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": os.path.join(home, "home"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(home, "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_ROLES_PATH": os.path.join(home, "proj", "roles"),
    })
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


def short(name):
    """A task's name without its role prefix (`role : name`)."""
    return name.split(" : ", 1)[-1]


def run_ansible(work, inv):
    o = sh([os.path.join(VENV, "ansible-playbook"), "-i", inv, "-l", HOSTS["ansible"], "site.yml"],
           cwd=os.path.join(work, "proj"), env=ansible_env(work))
    out = o.stdout
    try:
        v = json.loads(out[out.find("{"):])
    except ValueError:
        return o.returncode, [], out[-3000:] + o.stderr[-3000:]
    tasks = []
    for play in v.get("plays", []):
        for t in play.get("tasks", []):
            n = t["task"]["name"]
            if n == "Gathering Facts":
                continue
            h = t["hosts"].get(HOSTS["ansible"])
            if h is None:
                continue
            st = ("failed" if h.get("failed") else
                  "skipped" if h.get("skipped") else
                  "changed" if h.get("changed") else "ok")
            tasks.append((short(n), st, h.get("msg", "") if st == "failed" else ""))
    return o.returncode, tasks, ""


def run_deployer(deployer, work, inv):
    o = sh([deployer, "apply", "-i", inv, "-l", HOSTS["deployer"], "--format", "json",
            "--color", "never", "site.yml"], cwd=os.path.join(work, "proj"))
    tasks = []
    for line in o.stdout.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "task_result" and e.get("task") != "Gathering Facts":
            n, st = short(e.get("task", "")), e.get("status")
            m = e.get("msg", "") if st == "failed" else ""
            # A loop's items are one event each: one task, as Ansible
            # counts it (changed over failed over ok over skipped).
            if e.get("item") is not None and tasks and tasks[-1][0] == n and tasks[-1][3]:
                prev = tasks[-1][1]
                rank = ["changed", "failed", "ok", "skipped"]
                best = min(prev, st, key=lambda x: rank.index(x) if x in rank else 9)
                tasks[-1] = (n, best, tasks[-1][2] or m, True)
            else:
                tasks.append((n, st, m, e.get("item") is not None))
    tasks = [(n, st, m) for n, st, m, _ in tasks]
    err = "" if o.returncode == 0 else o.stderr[-3000:]
    return o.returncode, tasks, err


def counts(tasks):
    c = {}
    for _, st, _ in tasks:
        c[st] = c.get(st, 0) + 1
    return c


def include_normalised(tasks):
    """An unnamed include is `include_tasks` to Ansible and `include FILE` to
    deployer, which reports no result for an include that runs (Ansible: ok):
    compared by their skips only."""
    out = []
    for n, s, m in tasks:
        if n in ("include_tasks", "ansible.builtin.include_tasks") or n.startswith("include "):
            if s == "ok":
                continue
            n = "include_tasks"
        out.append((n, s, m))
    return out


def compare_tasks(a, d):
    """Lines for the tasks whose status differs (skipped and ok are told
    apart, as Ansible does)."""
    sa = [f"{n} => {s}" for n, s, _ in include_normalised(a)]
    sd = [f"{n} => {s}" for n, s, _ in include_normalised(d)]
    return [l for l in difflib.unified_diff(sa, sd, "ansible", "deployer", n=0, lineterm="")]


def compare_state(a, d):
    out = []
    for key in ("packages", "users", "groups"):
        for l in difflib.unified_diff(a[key], d[key], "ansible", "deployer", n=0, lineterm=""):
            if not l.startswith(("---", "+++", "@@")):
                out.append(f"{key}: {l}")
    for key in ("units", "crontabs", "files"):
        ka, kd = a[key], d[key]
        for k in sorted(set(ka) | set(kd)):
            if ka.get(k) != kd.get(k):
                out.append(f"{key}: {k}: ansible {ka.get(k)!r} deployer {kd.get(k)!r}")
    return out


def file_diff(path):
    texts = []
    for host in (HOSTS["ansible"], HOSTS["deployer"]):
        o = sh(["docker", "exec", CONTAINER[host], "cat", path])
        texts.append(o.stdout.splitlines())
    return list(difflib.unified_diff(texts[0], texts[1], "ansible", "deployer", n=1, lineterm=""))


def converge(deployer, role_dir):
    name = os.path.basename(os.path.normpath(role_dir))
    work = tempfile.mkdtemp(prefix=f"deployer-converge-{name}-")
    proj = os.path.join(work, "proj")
    shutil.copytree(role_dir, os.path.join(proj, "roles", name), symlinks=True)
    play = [{"hosts": "all", "become": True, "vars": ROLE_VARS.get(name, {}), "roles": [name]}]
    with open(os.path.join(proj, "site.yml"), "w") as f:
        f.write("---\n" + yaml.safe_dump(play, sort_keys=False))
    inv = os.path.join(TB, "inventory-systemd.yml")
    fresh_hosts(HOST_PREP.get(name))
    print(f"== {name}", flush=True)
    verdict = []
    ra, ta, ea = run_ansible(work, inv)
    rd, td, ed = run_deployer(deployer, work, inv)
    print(f"   first run: ansible rc {ra} {counts(ta)}; deployer rc {rd} {counts(td)}")
    if ea:
        print("   ansible-playbook output:\n" + ea)
    if ed:
        print("   deployer output:\n" + ed)
    for n, s, m in ta + td:
        if s == "failed":
            print(f"   failed: {n}: {m[:300]}")
    if not td or not ta:
        print(f"   VERDICT {name}: " + ("deployer" if not td else "ansible-playbook") + " ran no task", flush=True)
        shutil.rmtree(work)
        return False
    tdiff = compare_tasks(ta, td)
    if tdiff:
        verdict.append("per-task status differs")
        print("   per-task status (first run):")
        for l in tdiff:
            print("     " + l)
    paths = COMMON_PATHS + ROLE_PATHS.get(name, [])
    sa, sd = snapshot(HOSTS["ansible"], paths), snapshot(HOSTS["deployer"], paths)
    sdiff = compare_state(sa, sd)
    if sdiff:
        verdict.append(f"{len(sdiff)} state differences")
        print("   host state differences:")
        limit = int(os.environ.get("CONVERGE_DIFF_LINES", "60"))
        if len(sdiff) > limit:
            print(f"     ({len(sdiff) - limit} more left out; CONVERGE_DIFF_LINES=N shows more)")
        for l in sdiff[:limit]:
            print("     " + l)
            m = re.match(r"files: (\S+): ansible '(file [^']*)' deployer '(file [^']*)'", l)
            # Contents are shown for world-readable files only (never a key).
            readable = m and all(int(g.split()[1], 8) & 0o004 for g in (m.group(2), m.group(3)))
            if readable and m.group(2).split()[-1] != m.group(3).split()[-1]:
                for dl in file_diff(m.group(1))[:40]:
                    print("        " + dl)
    ra2, ta2, ea2 = run_ansible(work, inv)
    rd2, td2, ed2 = run_deployer(deployer, work, inv)
    ca, cd = counts(ta2).get("changed", 0), counts(td2).get("changed", 0)
    print(f"   second run: ansible rc {ra2} changed {ca}; deployer rc {rd2} changed {cd}")
    if ed2:
        print("   deployer output:\n" + ed2)
    again_a = [n for n, s, _ in ta2 if s == "changed"]
    for n, s, _ in td2:
        if s == "changed":
            both = "as ansible-playbook does" if n in again_a else "ansible-playbook does not"
            print(f"     deployer changed again: {n} ({both})")
    tdiff2 = compare_tasks(ta2, td2)
    if tdiff2:
        verdict.append("per-task status differs on the second run")
        for l in tdiff2:
            print("     " + l)
    if cd and not again_a:
        verdict.append(f"deployer's second run changed {cd}")
    if rd or rd2:
        verdict.append("deployer failed")
    if ra or ra2:
        verdict.append("ansible-playbook failed")
    print(f"   VERDICT {name}: " + ("identical" if not verdict else "; ".join(verdict)), flush=True)
    shutil.rmtree(work)
    return not verdict


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    deployer = os.path.abspath(sys.argv[1])
    ok = [converge(deployer, r) for r in sys.argv[2:]]
    print(f"{sum(ok)} of {len(ok)} roles converge identically")


if __name__ == "__main__":
    main()
