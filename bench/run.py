#!/usr/bin/env python3
"""Benchmark: deployer against ansible-playbook (pipelining + ControlPersist),
Ansible with Mitogen, pyinfra, and the one-SSH-session floor, on the same
testbed hosts in the same run (python3 stdlib only).

    bench/run.py                      # 1 and 20 hosts, K=5 and K=3 re-runs
    bench/run.py --hosts 1 --k 2      # quicker
    bench/run.py --no-up              # use the running testbed (refuses if it is down)
    bench/run.py --tools ansible@1,deployer,floor,bare,deployer-warm,floor-warm   # ansible at 1 host only

Rows: "deployer" opens a new SSH connection per host (--fresh-connection); "deployer-warm"
reuses the masters the run just before it left up (that priming run is untimed and its
sessions uncounted); "floor" is the role's checks in one SSH session per host on a new
connection, "floor-warm" the same over an SSH master already up; "bare" is `ssh host sudo
true` on a new connection.

Starts its own testbed with tests/testbed/up.sh N: TESTBED_ID and TESTBED_PORT_BASE
from the environment (default bn and 2500, ports 2501..), so it can run beside other
testbeds on the one Docker engine.
Tools: deployer (release build), ansible-core/mitogen/pyinfra from
/opt/deployer-bench/venv (created with pinned versions when missing).
Writes bench/results.json and the generated part of bench/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TESTBED = os.path.join(REPO, "tests", "testbed")
INVENTORY = os.path.join(TESTBED, "inventory.yml")
SSH_CONFIG = os.path.join(TESTBED, "state", "ssh_config")
TESTBED_ID = os.environ.get("TESTBED_ID") or "bn"
PORT_BASE = os.environ.get("TESTBED_PORT_BASE") or "2500"
VENV = os.environ.get("DEPLOYER_BENCH_VENV", "/opt/deployer-bench/venv")
PINS = ["ansible-core==2.19.14", "mitogen==0.3.54", "pyinfra==3.10.0"]
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", "/work/target-bench")
# DEPLOYER_BENCH_BIN: an already built deployer (no build; its profile is named in the results).
DEPLOYER = os.environ.get("DEPLOYER_BENCH_BIN") or os.path.join(TARGET_DIR, "release", "deployer")
PROFILE = "debug" if "/debug/" in DEPLOYER else "release"
ROOTS = {
    "ansible": "/srv/bench-ansible",
    "mitogen": "/srv/bench-mitogen",
    "pyinfra": "/srv/bench-pyinfra",
    "deployer": "/srv/bench-deployer",
}
# What the role manages, relative to its root (the floor stats and hashes these).
MANAGED = """. bin conf conf/sites run share data log conf/app.conf conf/sites/www.conf
conf/sites/api.conf conf/sites/admin.conf conf/app.env conf/features.json share/summary.txt
bin/run.sh share/words.txt share/nonl.txt conf/logrotate.conf share/VERSION run/port
conf/users conf/settings.ini conf/limits.conf conf/hosts current.conf data/store.db
data/words.sorted run/sites.count run/obsolete.pid""".split()


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def ensure_tools(tools):
    need = [os.path.join(VENV, "bin", "ansible-playbook")] if {"ansible", "mitogen"} & set(tools) else []
    need += [os.path.join(VENV, "bin", "pyinfra")] if "pyinfra" in tools else []
    if any(not os.path.exists(p) for p in need):
        log(f"creating {VENV} with {' '.join(PINS)}")
        sh([sys.executable, "-m", "venv", VENV])
        sh([os.path.join(VENV, "bin", "pip"), "install", "-q", *PINS])
    if not shutil.which("time") and not os.path.exists("/usr/bin/time"):
        log("installing GNU time")
        sh(["apt-get", "install", "-y", "-q", "time"])
    if os.environ.get("DEPLOYER_BENCH_BIN"):
        return
    log("building deployer (release)")
    subprocess.run(
        ["cargo", "build", "--release", "-q"],
        cwd=REPO,
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": TARGET_DIR},
    )


def testbed_up(n, start):
    env = {**os.environ, "TESTBED_ID": TESTBED_ID, "TESTBED_PORT_BASE": PORT_BASE}
    up = f"TESTBED_ID={TESTBED_ID} TESTBED_PORT_BASE={PORT_BASE} tests/testbed/up.sh {n}"
    if start:
        log(f"starting the testbed: {up}")
        r = subprocess.run(["tests/testbed/up.sh", str(n)], cwd=REPO, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench: the testbed did not start ({up}):\n{r.stderr[-2000:]}")
    hosts = [f"tb{i}" for i in range(1, n + 1)]
    missing = [h for h in hosts if not container_running(h)]
    if missing or not os.path.exists(INVENTORY):
        sys.exit(
            f"bench: the testbed is not up ({', '.join('deployer-' + TESTBED_ID + h[2:] for h in missing) or INVENTORY} missing).\n"
            f"Start it with:  cd {REPO} && {up}"
        )
    inv = open(INVENTORY).read()
    if f":{int(PORT_BASE) + 1}" not in inv and f"ansible_port: {int(PORT_BASE) + 1}" not in inv:
        sys.exit(f"bench: {INVENTORY} is not the TESTBED_ID={TESTBED_ID} testbed. Start it with:  {up}")
    return hosts


def container_running(host):
    r = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", f"deployer-{TESTBED_ID}{host[2:]}"],
        capture_output=True,
        text=True,
    )
    return r.returncode == 0 and r.stdout.strip() == "true"


def exec_counts(hosts):
    """Remote executions so far per host, from sshd's VERBOSE log."""
    out = {}
    for h in hosts:
        r = subprocess.run(
            ["docker", "logs", f"deployer-{TESTBED_ID}{h[2:]}"], capture_output=True, text=True
        )
        out[h] = sum(1 for l in (r.stdout + r.stderr).splitlines() if l.startswith("Starting session: command"))
    return out


def parallel(fn, items):
    res = {}
    ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, fn(i))) for i in items]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res


def on_hosts(hosts, script):
    def one(h):
        return subprocess.run(["ssh", "-F", SSH_CONFIG, f"root@{h}", script], capture_output=True, text=True)

    return parallel(one, hosts)


class Tools:
    def __init__(self, hosts, tmp):
        self.hosts = hosts
        self.tmp = tmp
        self.limit = ",".join(hosts)
        import site  # noqa: F401  (the venv's site-packages path below)

        pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
        self.mitogen_strategy = os.path.join(
            VENV, "lib", pyver, "site-packages", "ansible_mitogen", "plugins", "strategy"
        )
        self.pyinfra_inv = os.path.join(tmp, "pyinfra_inventory.py")
        # deployer's warm masters for this bench only (private, 0700).
        self.control_dir = os.path.join(tmp, "ctl")
        os.makedirs(self.control_dir, mode=0o700, exist_ok=True)
        self.floor_mux = {}
        self.write_pyinfra_inventory()

    def write_pyinfra_inventory(self):
        known = os.path.join(TESTBED, "state", "known_hosts")
        key = os.path.join(TESTBED, "state", "id_ed25519")
        lines = ["hosts = ["]
        for h in self.hosts:
            port = int(PORT_BASE) + int(h[2:])
            lines.append(
                f"    ({h!r}, {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}, 'ssh_user': 'deploy', "
                f"'ssh_key': {key!r}, 'ssh_known_hosts_file': {known!r}, "
                f"'ssh_strict_host_key_checking': 'yes', '_sudo': True}}),"
            )
        lines.append("]")
        with open(self.pyinfra_inv, "w") as f:
            f.write("\n".join(lines) + "\n")

    def ansible_env(self, mitogen):
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": os.path.join(HERE, "ansible.cfg"),
            "ANSIBLE_HOME": os.path.join(self.tmp, "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.tmp, "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        if mitogen:
            env["ANSIBLE_STRATEGY_PLUGINS"] = self.mitogen_strategy
            env["ANSIBLE_STRATEGY"] = "mitogen_linear"
        return env

    def command(self, tool):
        root = ROOTS.get(tool)
        if tool in ("ansible", "mitogen"):
            return (
                [os.path.join(VENV, "bin", "ansible-playbook"), "-i", INVENTORY, "-l", self.limit,
                 "-e", f"bench_root={root}", os.path.join(HERE, "site.yml")],
                self.ansible_env(tool == "mitogen"),
            )
        if tool == "pyinfra":
            return (
                [os.path.join(VENV, "bin", "pyinfra"), "-y", "--parallel", "20", self.pyinfra_inv,
                 os.path.join(HERE, "pyinfra", "deploy.py"), "--data", f"bench_root={root}"],
                {**os.environ, "PYTHONPATH": os.path.join(HERE, "pyinfra")},
            )
        if tool in ("deployer", "deployer-warm"):
            # "deployer": a new SSH connection per host (--fresh-connection); "deployer-warm":
            # the master the previous run left up (primed right before, untimed).
            fresh = ["--fresh-connection"] if tool == "deployer" else []
            return (
                ["/usr/bin/time", "-v", DEPLOYER, "apply", "-i", INVENTORY, "-l", self.limit, "-f", str(max(20, len(self.hosts))),
                 *fresh, "-e", f"bench_root={ROOTS['deployer']}", "--format", "json", os.path.join(HERE, "site.yml")],
                {**os.environ, "DEPLOYER_SSH_CONTROL_DIR": self.control_dir},
            )
        raise ValueError(tool)

    def run(self, tool):
        """One run: (wall seconds, changed total, peak RSS KB or None)."""
        if tool == "floor":
            return self.floor()
        if tool == "floor-warm":
            return self.floor(warm=True)
        if tool == "bare":
            return self.bare()
        cmd, env = self.command(tool)
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, cwd=self.tmp, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            sys.exit(f"bench: {tool} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        changed, rss = None, None
        if tool in ("ansible", "mitogen"):
            changed = sum(int(m) for m in re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", r.stdout, re.M))
        elif tool in ("deployer", "deployer-warm"):
            for line in r.stdout.splitlines():
                if '"event":"recap"' in line:
                    changed = sum(h["changed"] for h in json.loads(line)["hosts"].values())
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
            rss = int(m.group(1)) if m else None
        elif tool == "pyinfra":
            # Results table: "Grand total  HOSTS  SUCCESS(=changed)  ERROR  NO-CHANGE"; every
            # server.shell counts as a success (change), so a no-op re-run shows 2 per host.
            m = re.search(r"Grand total\s+\S+\s+(\S+)", r.stdout + r.stderr)
            changed = int(m.group(1)) if m and m.group(1).isdigit() else 0
        return wall, changed, rss

    def floor(self, warm=False):
        """The role's ~30 checks (stat + sha256 of every managed path) in ONE
        SSH session per host, a fresh connection each (warm: over an SSH master
        already up, started untimed before), all hosts in parallel."""
        root = ROOTS["deployer"]
        script = "cd " + root + " && for f in " + " ".join(MANAGED) + (
            "; do if [ -e \"$f\" ] || [ -L \"$f\" ]; then stat -c '%n|%F|%a|%U|%G|%s' -- \"$f\"; "
            "[ -f \"$f\" ] && sha256sum < \"$f\"; else echo \"$f absent\"; fi; done"
        )

        mux = self.floor_mux if warm else {}

        def one(h):
            return subprocess.run(
                ["ssh", "-F", SSH_CONFIG, *mux.get(h, []), h, "sudo sh -c " + shquote(script)],
                capture_output=True, text=True
            )

        t0 = time.monotonic()
        res = parallel(one, self.hosts)
        wall = time.monotonic() - t0
        for h, r in res.items():
            if r.returncode != 0 or r.stdout.count("\n") < len(MANAGED):
                sys.exit(f"bench: floor failed on {h}: {r.stderr}")
        return wall, 0, None

    def prime(self, tool):
        """Untimed, uncounted: what a warm row starts from. deployer-warm: a run
        just before leaves its SSH masters up; floor-warm: an SSH master per host."""
        if tool == "deployer-warm":
            cmd, env = self.command(tool)
            r = subprocess.run(cmd[2:], env=env, cwd=self.tmp, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"bench: priming deployer failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        elif tool == "floor-warm":
            self.floor_mux = parallel(self.master, self.hosts)

    def master(self, h):
        """An SSH master to h that stays up 60 s idle (untimed); the ssh options to use it."""
        sock = os.path.join(self.tmp, f"floor-{h}.sock")
        opts = ["-o", "ControlMaster=no", "-o", f"ControlPath={sock}"]
        if subprocess.run(["ssh", "-F", SSH_CONFIG, "-S", sock, "-O", "check", h], capture_output=True).returncode != 0:
            subprocess.run(["ssh", "-F", SSH_CONFIG, "-o", "ControlMaster=yes", "-o", f"ControlPath={sock}",
                            "-o", "ControlPersist=60", "-f", "-N", h], check=True)
        return opts

    def bare(self):
        """`ssh host sudo true` on a new connection, all hosts in parallel."""
        def one(h):
            return subprocess.run(["ssh", "-F", SSH_CONFIG, h, "sudo true"], capture_output=True, text=True)

        t0 = time.monotonic()
        res = parallel(one, self.hosts)
        wall = time.monotonic() - t0
        for h, r in res.items():
            if r.returncode != 0:
                sys.exit(f"bench: ssh sudo true failed on {h}: {r.stderr}")
        return wall, 0, None


def shquote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def bench(n, k, tools, start_testbed, profile):
    hosts = testbed_up(n, start_testbed)
    log(f"{n} host(s): cleaning {', '.join(ROOTS.values())}")
    on_hosts(hosts, "rm -rf " + " ".join(ROOTS.values()))
    tmp = tempfile.mkdtemp(prefix="deployer-bench-")
    t = Tools(hosts, tmp)
    res = {tool: {"first": None, "reruns": [], "changed_first": None, "changed_reruns": [],
                  "execs_first": None, "execs_reruns": [], "rss_kb": []} for tool in tools}

    def timed(tool, first):
        t.prime(tool)
        before = exec_counts(hosts)
        wall, changed, rss = t.run(tool)
        after = exec_counts(hosts)
        per_host = [after[h] - before[h] for h in hosts]
        execs = {"mean": sum(per_host) / len(per_host), "max": max(per_host)}
        r = res[tool]
        if first:
            r["first"], r["changed_first"], r["execs_first"] = wall, changed, execs
        else:
            r["reruns"].append(wall)
            r["changed_reruns"].append(changed)
            r["execs_reruns"].append(execs)
        if rss:
            r["rss_kb"].append(rss)
        log(f"  {n} host(s) {'first' if first else 'rerun'} {tool:9s} {wall:8.3f} s  changed={changed}  "
            f"execs/host={execs['mean']:.1f}" + (f"  rss={rss} KB" if rss else ""))

    for tool in tools:
        if tool not in ("floor", "floor-warm", "bare", "deployer-warm"):
            timed(tool, True)
    for _ in range(k):
        for tool in tools:
            timed(tool, False)
    for tool in tools:
        r = res[tool]
        r["median"] = statistics.median(r["reruns"]) if r["reruns"] else None
    out = {"hosts": n, "k": k, "tools": res}
    if profile:
        out["profile"] = profile_deployer(t, hosts)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def profile_deployer(t, hosts):
    """Where a no-op re-run's time goes: process start, SSH master ready, each
    remote execution, exit (strace timestamps of the execve of every ssh), plus
    a bare SSH connection + `true` and deployer's own CPU time."""
    cmd, env = t.command("deployer")
    cmd = cmd[2:]  # drop /usr/bin/time -v
    trace = os.path.join(t.tmp, "strace.txt")
    runs = []
    for _ in range(3):
        t0 = time.time()
        subprocess.run(["strace", "-f", "-ttt", "-e", "trace=execve,exit_group", "-o", trace, *cmd],
                       env=env, cwd=t.tmp, capture_output=True, check=True)
        events = []
        for line in open(trace):
            m = re.match(r"\d+\s+([\d.]+) (execve|exit_group)\((.*)", line)
            if not m:
                continue
            ts, what, rest = float(m.group(1)), m.group(2), m.group(3)
            if what == "execve" and not rest.rstrip().endswith("= 0"):
                continue  # PATH lookups that failed (ENOENT)
            if what == "execve" and "/ssh\"" in rest:
                mm = re.search(r"\[(.*?)\]", rest)
                argv = mm.group(1) if mm else rest
                kind = "master" if "-M" in argv or "ControlMaster=yes" in argv else "exec"
                events.append((ts, kind))
            elif what == "execve" and not events and "deployer" in rest:
                events.append((ts, "start"))
        first = events[0][0] if events else t0
        last_line = open(trace).read().strip().splitlines()[-1]
        end = float(re.match(r"\d+\s+([\d.]+)", last_line).group(1))
        runs.append({"events": [(round(ts - first, 4), k) for ts, k in events], "total": round(end - first, 4)})
    # A bare SSH connection (new master-less connection + one command).
    bare = []
    for _ in range(5):
        t0 = time.monotonic()
        subprocess.run(["ssh", "-F", SSH_CONFIG, hosts[0], "true"], check=True)
        bare.append(time.monotonic() - t0)
    sudo = []
    for _ in range(5):
        t0 = time.monotonic()
        subprocess.run(["ssh", "-F", SSH_CONFIG, hosts[0], "sudo true"], check=True)
        sudo.append(time.monotonic() - t0)
    # CPU time of deployer itself.
    r = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *cmd], env=env, cwd=t.tmp, capture_output=True, text=True)
    wall, user, sys_, rss = r.stderr.strip().splitlines()[-1].split()
    return {"strace_runs": runs, "bare_ssh_true_s": round(statistics.median(bare), 4),
            "bare_ssh_sudo_true_s": round(statistics.median(sudo), 4),
            "cpu": {"wall": float(wall), "user": float(user), "sys": float(sys_), "rss_kb": int(rss)}}


def machine():
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(int(mem) / 1048576, 1),
            "kernel": platform.release(), "os": platform.platform(),
            "versions": {"ansible-core": "2.19.14", "mitogen": "0.3.54", "pyinfra": "3.10.0",
                         "deployer": deployer_version()}}


def deployer_version():
    """The commit the measured binary was built from (its --version), else this checkout's HEAD."""
    try:
        out = subprocess.run([DEPLOYER, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"\(([^)]+)\)", out)
        if m and m.group(1) != "unknown revision":
            return m.group(1)
    except OSError:
        pass
    return sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).stdout.strip()


def fmt(x, unit="s"):
    return "–" if x is None else f"{x:.3f} {unit}" if x < 10 else f"{x:.1f} {unit}"


def table(results):
    rows = ["| hosts | tool | first apply | no-op re-run (median) | re-runs | ratio tool/deployer (re-run) | remote execs/host first / re-run | changed on re-runs | deployer peak RSS |",
            "|---|---|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        tools = case["tools"]
        dep = tools.get("deployer", {}).get("median")
        for name, r in tools.items():
            ratio = f"{r['median'] / dep:.1f}x" if dep and r["median"] else "–"
            ef = f"{r['execs_first']['mean']:.1f}" if r["execs_first"] else "–"
            er = f"{statistics.mean(e['mean'] for e in r['execs_reruns']):.1f}" if r["execs_reruns"] else "–"
            rss = f"{max(r['rss_kb']) / 1024:.1f} MB" if r["rss_kb"] else ""
            rows.append(f"| {case['hosts']} | {name} | {fmt(r['first'])} | {fmt(r['median'])} | {len(r['reruns'])} | "
                        f"{ratio} | {ef} / {er} | {r['changed_reruns']} | {rss} |")
    return "\n".join(rows)


def ratios(case):
    """The issue's targets, from one case's medians: (label, value) pairs."""
    med = {t: r["median"] for t, r in case["tools"].items() if r.get("median")}
    out = []

    def q(label, a, b):
        if a in med and b in med:
            out.append((label, f"{med[a] / med[b]:.2f}x"))

    q("deployer (new connection) / bare `ssh host sudo true`", "deployer", "bare")
    q("deployer / floor (new connection)", "deployer", "floor")
    q("deployer warm / floor warm", "deployer-warm", "floor-warm")
    q("ansible (pipelining) / deployer", "ansible", "deployer")
    q("ansible (pipelining) / deployer warm", "ansible", "deployer-warm")
    return out


def write_results(results):
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    m = results["machine"]
    gen = [
        "<!-- bench:begin (generated by bench/run.py; edit outside these markers) -->",
        f"Run {results['date']} on {m['nproc']} vCPU ({m['cpu']}), {m['mem_gib']} GiB RAM, "
        f"kernel {m['kernel']}; ansible-core {m['versions']['ansible-core']}, mitogen {m['versions']['mitogen']}, "
        f"pyinfra {m['versions']['pyinfra']}, deployer {m['versions']['deployer']} ({PROFILE}). "
        f"Command: `{results['command']}`.",
        "",
        table(results),
        "",
    ]
    for case in results["cases"]:
        rs = ratios(case)
        if rs:
            gen.append(f"Ratios of medians at {case['hosts']} host(s): " + "; ".join(f"{l} = **{v}**" for l, v in rs) + ".")
            gen.append("")
    for case in results["cases"]:
        if "profile" in case:
            p = case["profile"]
            gen.append(f"Profile of deployer's no-op re-run at {case['hosts']} host(s) (strace timestamps, s from start): ")
            for run in p["strace_runs"]:
                ev = run["events"]
                if len(ev) <= 12:
                    gen.append(f"- total {run['total']}: " + ", ".join(f"{k}@{ts}" for ts, k in ev))
                else:
                    ms = [ts for ts, k in ev if k == "master"]
                    xs = [ts for ts, k in ev if k == "exec"]
                    line = f"- total {run['total']}: {len(ms)} ssh masters started {ms[0]}..{ms[-1]}" if ms else f"- total {run['total']}"
                    if xs:
                        line += (f", {len(xs)} ssh clients {xs[0]}..{xs[-1]} "
                                 f"(last 20: {', '.join(str(x) for x in xs[-20:])})")
                    else:
                        line += ", no other ssh client (each master carries its host's shell)"
                    gen.append(line)
            c = p["cpu"]
            gen.append(f"- bare `ssh host true` (new connection): {p['bare_ssh_true_s']} s, `ssh host sudo true`: "
                       f"{p['bare_ssh_sudo_true_s']} s; deployer CPU: user {c['user']} s, "
                       f"sys {c['sys']} s for {c['wall']} s wall, RSS {c['rss_kb'] / 1024:.1f} MB")
            gen.append("")
    gen.append("<!-- bench:end -->")
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n<!-- bench:begin -->\n<!-- bench:end -->\n"
    text = re.sub(r"<!-- bench:begin.*?<!-- bench:end -->", lambda _: "\n".join(gen), text, flags=re.S)
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", default="1,20", help="comma-separated host counts (default 1,20)")
    ap.add_argument("--k", type=int, default=None, help="re-runs per tool (default 5 at 1 host, 3 otherwise)")
    ap.add_argument("--tools", default="ansible,mitogen,pyinfra,deployer,floor,bare,deployer-warm,floor-warm",
                    help="comma-separated; tool@1+20 runs a tool only at those host counts")
    ap.add_argument("--no-up", action="store_true", help="do not start the testbed; refuse if it is not up")
    args = ap.parse_args()
    # `tool@1+20`: run that tool only at those host counts (ansible at 100 hosts takes long).
    spec = [(t.split("@")[0], {int(x) for x in t.split("@")[1].split("+")} if "@" in t else None)
            for t in args.tools.split(",")]
    ensure_tools([t for t, _ in spec])
    cases = []
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "command": f"TESTBED_ID={TESTBED_ID} TESTBED_PORT_BASE={PORT_BASE} "
               + " ".join(["bench/run.py", *sys.argv[1:]]), "machine": machine(), "cases": cases}
    for n in [int(x) for x in args.hosts.split(",")]:
        k = args.k if args.k is not None else (5 if n == 1 else 3)
        tools = [t for t, at in spec if at is None or n in at]
        cases.append(bench(n, k, tools, not args.no_up, profile=True))
        # Written after every host count: a long run cut short keeps what it measured.
        write_results(results)
    print(table(results))


if __name__ == "__main__":
    main()
