"""The bench role as pyinfra operations (pyinfra 3.x), for bench/run.py.

Same files and commands as bench/roles/bench. Where pyinfra has no equivalent,
the nearest operation is used: lineinfile -> files.line (no insertafter/BOF:
appends), templates that use Ansible-only filters (quote, to_nice_json) are
rendered in Python and put with files.put, `changed_when: false` commands are
plain server.shell (pyinfra counts every shell run as a change), `assert` is
dropped, `creates:` is a File fact check at plan time.
"""

import io
import json
import os
import shlex

import yaml
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "roles", "bench")
V = yaml.safe_load(open(os.path.join(ROLE, "defaults", "main.yml")))
V["bench_root"] = host.data.get("bench_root", V["bench_root"])
R = V["bench_root"]
T = os.path.join(ROLE, "templates")
F = os.path.join(ROLE, "files")
J = {"trim_blocks": True}

files.directory(name="Root directory", path=R, mode="755")
for d in ["bin", "conf", "conf/sites", "run", "share"]:
    files.directory(name=f"Layout {d}", path=f"{R}/{d}", mode="755")
files.directory(name="Private data directory", path=f"{R}/data", mode="750")
files.directory(name="Log directory", path=f"{R}/log", user=V["bench_owner"], group=V["bench_owner"], mode="770")

notify = [files.template(name="Main configuration", src=f"{T}/app.conf.j2", dest=f"{R}/conf/app.conf",
                         mode="644", jinja_env_kwargs=J, **V)]
for site in V["bench_sites"]:
    notify.append(files.template(name=f"Site {site['name']}", src=f"{T}/site.conf.j2",
                                 dest=f"{R}/conf/sites/{site['name']}.conf", mode="644",
                                 jinja_env_kwargs=J, item=site))
env = "".join(f"{k}={shlex.quote(V['bench_env'][k])}\n" for k in sorted(V["bench_env"]))
files.put(name="Environment file", src=io.StringIO(env), dest=f"{R}/conf/app.env", user="root",
          group=V["bench_owner"], mode="640")
files.put(name="Features as JSON", src=io.StringIO(json.dumps(V["bench_features"], indent=4, sort_keys=True) + "\n"),
          dest=f"{R}/conf/features.json", mode="644")
files.template(name="Summary", src=f"{T}/inventory.txt.j2", dest=f"{R}/share/summary.txt", mode="444",
               jinja_env_kwargs=J, **V)
files.put(name="Start script", src=f"{F}/run.sh", dest=f"{R}/bin/run.sh", mode="755")
files.put(name="Word list", src=f"{F}/words.txt", dest=f"{R}/share/words.txt", mode="644")
files.put(name="No trailing newline", src=f"{F}/nonl.txt", dest=f"{R}/share/nonl.txt", mode="644")
files.put(name="Logrotate", src=f"{F}/logrotate.conf", dest=f"{R}/conf/logrotate.conf",
          user=V["bench_owner"], group=V["bench_owner"], mode="600")
files.put(name="Version", src=io.StringIO(f"{V['bench_app']} 1.4.2\n"), dest=f"{R}/share/VERSION", mode="644")
files.put(name="Port", src=io.StringIO(str(V["bench_port"])), dest=f"{R}/run/port", mode="644")
files.put(name="Users", src=io.StringIO("# allowed users\nalice\nbob\n"), dest=f"{R}/conf/users", mode="640")
if not host.get_fact(File, path=f"{R}/conf/settings.ini"):
    files.put(name="Seed settings", src=io.StringIO(f"[main]\nname = {V['bench_app']}\ntimeout = 30\n# cache = off\n"),
              dest=f"{R}/conf/settings.ini", mode="644")
files.line(name="Settings timeout", path=f"{R}/conf/settings.ini", line=r"^timeout\s*=", replace="timeout = 60")
files.line(name="Settings cache", path=f"{R}/conf/settings.ini", line=r"^#?\s*cache\s*=", replace="cache = on")
files.line(name="Settings retries", path=f"{R}/conf/settings.ini", line="retries = 3")
files.line(name="Limits", path=f"{R}/conf/limits.conf", line=f"{V['bench_owner']} soft nofile 65536")
files.line(name="Limits header", path=f"{R}/conf/limits.conf", line=f"# limits for {V['bench_app']}")
files.line(name="Stale line removed", path=f"{R}/conf/settings.ini", line="^legacy", present=False)
files.block(name="Hosts block", path=f"{R}/conf/hosts",
            content="".join(f"127.0.0.1 {s['server_name']}\n" for s in V["bench_sites"]).rstrip("\n"))
files.block(name="Settings block", path=f"{R}/conf/settings.ini", marker="; {mark} queue settings",
            content=f"[queue]\ndriver = {V['bench_features']['queue']['driver']}\nsize = {V['bench_features']['queue']['size']}")
files.link(name="Link to the current configuration", path=f"{R}/current.conf", target=f"{R}/conf/app.conf")
if not host.get_fact(File, path=f"{R}/data/store.db"):
    server.shell(name="Initialise the data store once", commands=[f"printf 'initialised\\n' > {R}/data/store.db"])
if not host.get_fact(File, path=f"{R}/data/words.sorted"):
    server.shell(name="Build a cache once", commands=[f"cd {R} && sort share/words.txt > data/words.sorted"])
files.file(name="Mode on an existing file", path=f"{R}/data/store.db", mode="600")
server.shell(name="Read the version", commands=[f"cat {R}/share/VERSION"])
server.shell(name="Count configuration files", commands=[f"ls {R}/conf/sites | wc -l"])
files.put(name="Record the site count", src=io.StringIO(f"sites={len(V['bench_sites'])}\n"),
          dest=f"{R}/run/sites.count", mode="644")
files.file(name="Absent file", path=f"{R}/run/obsolete.pid", present=False)
server.shell(name="reload app", commands=[f"touch {R}/run/reloaded"], _if=any_changed(*notify))
