#!/usr/bin/env bash
# The Plane hook (deployer.plane.plane_users) against REAL Plane: builds the
# backend of Plane v1.2.3 from its own source and runs the hook against it on
# loopback, with the spec's admin, workspace and 10 agents
# (inventory/production/group_vars/all/main.yml): a first apply, a second apply at once
# (changed=0), `check` (exit 0), a role change (planned by `check --diff`, then
# applied) and a token loss (the token deleted from the vault: replaced, and the
# old one revoked on Plane).
#
# Plane's source: https://github.com/makeplane/plane, tag v1.2.3 (backend under
# apps/api/). Fetching it needs network access CI may not have, so the script
# takes it from PLANE_SRC and skips (exit 0, "SKIPPED: no Plane source") without:
#   git clone --bare https://github.com/makeplane/plane /srv/plane.git
#   PLANE_SRC=/srv/plane.git tests/real_plane/run.sh
# PLANE_SRC may be a bare git dir, a clone (the tag is read from git), or a
# plain checkout of the tag (a directory holding apps/api/manage.py).
#
# Needs: Python 3.12 (PLANE_PYTHON, python3.12 on PATH, or pyenv's 3.12.x), PyPI
# reachable for the first run (`pip install` of apps/api/requirements), Debian's
# PostgreSQL 15 (postgresql-15) and redis-server (tests/testbed/install-deps.sh
# installs both when REAL_PLANE_DEPS=1), curl. Everything listens on 127.0.0.1
# only; Plane's own outgoing calls (version check, telemetry) go to a dead
# proxy. The venv and the migrated database (a pg_dump) are cached under
# REAL_PLANE_CACHE (default ~/.cache/deployer-real-plane): the first run takes
# ~8 minutes (pip ~2, migrate ~3.5), later runs ~2. REAL_PLANE_FRESH=1 migrates
# again; REAL_PLANE_KEEP=1 leaves the scratch dir (logs) in place.
#
# Ports: REAL_PLANE_PORT_BASE (default 15430): +1 PostgreSQL, +2 Redis, +3 Plane
# (refused with a clear message when one is already taken).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
TAG=${PLANE_TAG:-v1.2.3}
BASE=${REAL_PLANE_PORT_BASE:-15430}
PG_PORT=$((BASE + 1))
REDIS_PORT=$((BASE + 2))
API_PORT=$((BASE + 3))
CACHE=${REAL_PLANE_CACHE:-$HOME/.cache/deployer-real-plane}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

say() { printf '[real-plane %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*"; exit 1; }
START=$(date +%s)
lap() { echo "$(( $(date +%s) - START ))s"; }

if [ -z "${PLANE_SRC:-}" ] || [ ! -e "${PLANE_SRC}" ]; then
    echo "SKIPPED: no Plane source (set PLANE_SRC to a git dir or checkout of" \
        "https://github.com/makeplane/plane at tag $TAG)"
    exit 0
fi

# --- tools -------------------------------------------------------------------
PY=${PLANE_PYTHON:-}
if [ -z "$PY" ]; then
    # (a pyenv shim on PATH may exist without a usable 3.12 behind it)
    for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3; do
        if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            PY=$(command -v "$c"); break
        fi
    done
fi
[ -n "$PY" ] || die "no Python 3.12 (set PLANE_PYTHON)"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 12)' || die "$PY is not Python 3.12"
[ -x "$PGBIN/pg_ctl" ] || die "no PostgreSQL 15 under $PGBIN (apt install postgresql-15)"
command -v redis-server >/dev/null || die "no redis-server (apt install redis-server)"
command -v curl >/dev/null || die "no curl"

DEPLOYER=${DEPLOYER:-}
if [ -z "$DEPLOYER" ]; then
    # Built as the tests build it (dev-dependency features unified), so the
    # test suite's compiled dependencies are reused instead of built again.
    say "building deployer"
    (cd "$REPO" && cargo build --quiet --test plane_users) || die "cargo build"
    DEPLOYER=$REPO/target/debug/deployer
fi

for port in "$PG_PORT" "$REDIS_PORT" "$API_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already taken (set REAL_PLANE_PORT_BASE to a free range)"
    fi
done

# --- scratch dir and cleanup -------------------------------------------------
WORK=$(mktemp -d /tmp/deployer-real-plane.XXXXXX)
chmod 711 "$WORK"
PIDS=()
cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -f "$WORK/redis.pid" ]; then kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; fi
    if [ -f "$WORK/pg/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true; fi
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${REAL_PLANE_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
        say "scratch dir kept: $WORK (logs: plane.log, pg.log, redis.log)"
        rm -rf "$WORK/project/secrets.yml" "$WORK/vault-pass" "$WORK/env"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: it runs as the `postgres` user then.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (postgresql-15 creates it)"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# --- Plane's source ----------------------------------------------------------
say "source: $PLANE_SRC ($TAG)"
mkdir -p "$WORK/src"
if git --git-dir="$PLANE_SRC" rev-parse --verify -q "$TAG^{commit}" >/dev/null 2>&1; then
    git --git-dir="$PLANE_SRC" archive "$TAG" apps/api | tar -x -C "$WORK/src"
elif git -C "$PLANE_SRC" rev-parse --verify -q "$TAG^{commit}" >/dev/null 2>&1; then
    git -C "$PLANE_SRC" archive "$TAG" apps/api | tar -x -C "$WORK/src"
elif [ -f "$PLANE_SRC/apps/api/manage.py" ]; then
    mkdir -p "$WORK/src/apps" && cp -a "$PLANE_SRC/apps/api" "$WORK/src/apps/"
else
    die "$PLANE_SRC is neither a git dir with tag $TAG nor a checkout holding apps/api/manage.py"
fi
API=$WORK/src/apps/api
[ -f "$API/manage.py" ] || die "no apps/api/manage.py in the source"

# --- venv (cached) -----------------------------------------------------------
# base.txt without psycopg-c (a C build; psycopg-binary is kept), gunicorn from
# production.txt, and kombu pinned: celery 5.4.0 pulls a newer kombu that
# refuses Plane's redis==5.0.4.
REQ=$WORK/requirements.txt
{
    grep -v -E '^(psycopg-c|-r )' "$API/requirements/base.txt"
    grep -E '^gunicorn' "$API/requirements/production.txt"
    echo "kombu==5.4.2"
} >"$REQ"
KEY=$( { "$PY" -V; cat "$REQ"; } | sha256sum | cut -c1-16)
VENV=$CACHE/venv-$KEY
mkdir -p "$CACHE"
(
    flock 9
    if [ ! -f "$VENV/.complete" ]; then
        say "venv: pip install into $VENV (first run only)"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" >"$WORK/pip.log" 2>&1 \
            || { tail -20 "$WORK/pip.log"; exit 1; }
        touch "$VENV/.complete"
    fi
) 9>"$CACHE/.lock" || die "pip install (see above)"
say "venv ready ($(lap))"

# --- PostgreSQL and Redis on private loopback ports --------------------------
rand() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
PG_PW=$(rand)
REDIS_PW=$(rand)
mkdir -p "$WORK/pg" "$WORK/pgsock"
chown postgres "$WORK/pg" "$WORK/pgsock" 2>/dev/null || true
chmod 700 "$WORK/pg"
(umask 077 && printf '%s\n' "$PG_PW" >"$WORK/pg.pw")
chown postgres "$WORK/pg.pw" 2>/dev/null || true
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U plane --auth=scram-sha-256 --pwfile="$WORK/pg.pw" >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log"; die "initdb"; }
rm -f "$WORK/pg.pw"
touch "$WORK/pg.log" && chown postgres "$WORK/pg.log" 2>/dev/null || true
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
    -o "-p $PG_PORT -k $WORK/pgsock -c listen_addresses=127.0.0.1" start >/dev/null \
    || { cat "$WORK/pg.log"; die "PostgreSQL did not start on 127.0.0.1:$PG_PORT"; }

umask 077
cat >"$WORK/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
requirepass $REDIS_PW
save ""
appendonly no
dir $WORK
daemonize yes
pidfile $WORK/redis.pid
logfile $WORK/redis.log
EOF
redis-server "$WORK/redis.conf" || die "redis-server did not start on 127.0.0.1:$REDIS_PORT"
umask 022

# Plane's environment (plane/settings/common.py, production.py). Secrets go
# through the environment, never argv.
export PGPASSWORD=$PG_PW
export DJANGO_SETTINGS_MODULE=plane.settings.production
export SECRET_KEY
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')
export DATABASE_URL="postgresql://plane:$PG_PW@127.0.0.1:$PG_PORT/plane"
export REDIS_URL="redis://:$REDIS_PW@127.0.0.1:$REDIS_PORT/4"
export AMQP_URL="redis://:$REDIS_PW@127.0.0.1:$REDIS_PORT/5"
export WEB_URL="http://127.0.0.1:$API_PORT"
export DEBUG=0 USE_MINIO=0 GUNICORN_WORKERS=1 API_KEY_RATE_LIMIT=60/minute
export http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9
export HTTP_PROXY=$http_proxy HTTPS_PROXY=$https_proxy
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
PSQL=("$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U plane -v ON_ERROR_STOP=1 -q)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE plane" || die "create database"
say "PostgreSQL 127.0.0.1:$PG_PORT and Redis 127.0.0.1:$REDIS_PORT up ($(lap))"

cd "$API"
manage() { "$VENV/bin/python" manage.py "$@"; }
SRC_ID=$(cd "$API" && find . -path ./logs -prune -o -type f -name '*.py' -path '*migrations*' -print | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
DUMP=$CACHE/migrated-$TAG-$SRC_ID.dump
if [ -f "$DUMP" ] && [ "${REAL_PLANE_FRESH:-0}" != 1 ]; then
    say "database: restoring the migrated schema from $DUMP"
    "$PGBIN/pg_restore" -h 127.0.0.1 -p "$PG_PORT" -U plane -d plane --no-owner "$DUMP" || die "pg_restore"
    manage migrate --check >/dev/null 2>&1 || die "the cached database has unapplied migrations (REAL_PLANE_FRESH=1)"
else
    say "database: manage.py migrate (~3.5 min)"
    T0=$(date +%s)
    manage migrate --no-input >"$WORK/migrate.log" 2>&1 || { tail -30 "$WORK/migrate.log"; die "migrate"; }
    say "migrate took $(( $(date +%s) - T0 ))s"
    "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PG_PORT" -U plane -Fc -f "$DUMP.tmp" plane && mv "$DUMP.tmp" "$DUMP"
fi
manage register_instance "$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)" >"$WORK/register.log" 2>&1 \
    || { cat "$WORK/register.log"; die "register_instance"; }
manage configure_instance >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; die "configure_instance"; }

"$VENV/bin/gunicorn" -w "$GUNICORN_WORKERS" -k uvicorn.workers.UvicornWorker plane.asgi:application \
    --bind "127.0.0.1:$API_PORT" --access-logfile - >"$WORK/plane.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$API_PORT/" >/dev/null 2>&1 && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { tail -30 "$WORK/plane.log"; die "gunicorn exited"; }
    sleep 1
done
curl -fsS "http://127.0.0.1:$API_PORT/" >/dev/null || die "Plane did not answer on 127.0.0.1:$API_PORT"
say "Plane $TAG answering on http://127.0.0.1:$API_PORT ($(lap))"
cd "$WORK"

# --- the project: the spec's admin, workspace and agents ---------------------
P=$WORK/project
mkdir -p "$P"
umask 077
rand >"$WORK/vault-pass"
printf 'vault_plane_admin_password: %s\n' "$(rand)" >"$P/secrets.yml"
umask 022
printf 'all:\n  hosts:\n    localhost:\n      ansible_connection: local\n' >"$P/hosts.yml"
MAIN=$REPO/inventory/production/group_vars/all/main.yml
val() { sed -n "s/^$1: *\"\\(.*\\)\"/\\1/p" "$MAIN"; }
AGENTS=$(sed -n '/^plane_agents:/,/^$/p' "$MAIN" | grep '^  - ')
[ "$(printf '%s\n' "$AGENTS" | wc -l)" = 10 ] || die "expected the spec's 10 agents in $MAIN"
site() { # $1: the agents list
    cat <<EOF
- hosts: localhost
  gather_facts: false
  vars_files: [secrets.yml]
  tasks:
    - name: Plane users, roles and API tokens
      deployer.plane.plane_users:
        api_url: http://127.0.0.1:$API_PORT
        workspace: {name: Javisi, slug: $(val plane_workspace_slug)}
        admin: {email: "$(val plane_admin_email)", first_name: "$(val plane_admin_name)", display_name: "$(val plane_admin_display_name)"}
        admin_password: "{{ vault_plane_admin_password }}"
        vault_file: secrets.yml
        admin_token_key: vault_plane_admin_token
        agent_token_key: "vault_plane_{id}_token"
        agent_password_key: "vault_plane_{id}_password"
        agents:
$(printf '%s\n' "$1" | sed 's/^/        /')
EOF
}
site "$AGENTS" >"$P/site.yml"
dep() { (cd "$P" && "$DEPLOYER" "$@" --vault-password-file "$WORK/vault-pass"); }
dep vault encrypt secrets.yml >/dev/null || die "vault encrypt"
vault_get() { dep vault view secrets.yml | sed -n "s/^$1: *\"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}$/\\1/p"; }
# A v1 call with a token, the key passed on stdin (never argv).
v1() { # $1 token, $2 path → prints "<status> <body>"
    printf 'X-API-Key: %s\n' "$1" | curl -sS -H @- -o "$WORK/v1.body" -w '%{http_code}' \
        "http://127.0.0.1:$API_PORT$2"
}
changed() { sed -n 's/.*"event":"recap".*"changed":\([0-9]*\).*/\1/p' | head -1; }
OUTS=()
run() { # $1 label, rest: deployer args; keeps the output for the leak check
    local t0 rc=0
    t0=$(date +%s)
    dep "${@:2}" >"$WORK/out.$1" 2>&1 || rc=$?
    OUTS+=("$WORK/out.$1")
    say "$1: exit $rc in $(( $(date +%s) - t0 ))s"
    return $rc
}

# 1. First apply.
run apply1 apply -i hosts.yml site.yml --format json || { cat "$WORK/out.apply1"; die "first apply"; }
C1=$(changed <"$WORK/out.apply1")
[ "${C1:-0}" -ge 1 ] || { cat "$WORK/out.apply1"; die "first apply changed nothing"; }
# 2. Second apply at once: nothing to do.
run apply2 apply -i hosts.yml site.yml --format json || { cat "$WORK/out.apply2"; die "second apply"; }
C2=$(changed <"$WORK/out.apply2")
[ "$C2" = 0 ] || { cat "$WORK/out.apply2"; die "second apply changed=$C2, expected 0"; }
# 3. check right after: exit 0.
run check1 check -i hosts.yml site.yml || { cat "$WORK/out.check1"; die "check after two applies"; }

# Every token answers /api/v1/users/me/ as its user; roles as asked.
ADMIN_EMAIL=$(val plane_admin_email)
ADMIN_TOKEN=$(vault_get vault_plane_admin_token)
[ "$(v1 "$ADMIN_TOKEN" /api/v1/users/me/)" = 200 ] || die "the admin token does not answer users/me"
grep -q "\"email\": *\"$ADMIN_EMAIL\"" "$WORK/v1.body" || die "the admin token is not $ADMIN_EMAIL's"
for id in $(printf '%s\n' "$AGENTS" | sed -n 's/.*id: "\([^"]*\)".*/\1/p'); do
    email=$(printf '%s\n' "$AGENTS" | sed -n "s/.*id: \"$id\", email: \"\\([^\"]*\\)\".*/\\1/p")
    tok=$(vault_get "vault_plane_${id}_token")
    [ -n "$(vault_get "vault_plane_${id}_password")" ] || die "no password for $id in the vault"
    [ "$(v1 "$tok" /api/v1/users/me/)" = 200 ] || die "$id's token does not answer users/me"
    grep -q "\"email\": *\"$email\"" "$WORK/v1.body" || die "$id's token is not $email's"
done
member_role() { # $1 email → role integer in the workspace
    [ "$(v1 "$ADMIN_TOKEN" "/api/v1/workspaces/$(val plane_workspace_slug)/members/")" = 200 ] || die "members list"
    "$PY" -c 'import json,sys
ms = json.load(open(sys.argv[1]))
print(next((m.get("role") for m in ms if m.get("email") == sys.argv[2]), "absent"))' "$WORK/v1.body" "$1"
}
[ "$(member_role concierge@agents.javisi.local)" = 20 ] || die "concierge is not Admin (20)"
[ "$(member_role builder@agents.javisi.local)" = 15 ] || die "builder is not Member (15)"
"$PY" - "$WORK/v1.body" "$MAIN" <<'PYEOF' || die "display names differ from the spec's"
import json, re, sys
members = {m.get("email"): m for m in json.load(open(sys.argv[1]))}
want = dict(re.findall(r'email: "([^"]+)", display_name: "([^"]+)"', open(sys.argv[2]).read()))
bad = [f"{e}: {members.get(e, {}).get('display_name')!r} (want {d!r})" for e, d in want.items()
       if members.get(e, {}).get("display_name") != d]
if bad:
    sys.exit("display names: " + "; ".join(bad))
PYEOF
say "11 tokens answer users/me as their users; 10 passwords stored; roles 20/15 and display names as asked"

# 4. A role change: planned by check --diff (exit 2), then applied.
site "${AGENTS/role: \"Member\"/role: \"Admin\"}" >"$P/site.yml"   # the first Member (builder) → Admin
RC=0; run check2 check --diff -i hosts.yml site.yml || RC=$?
[ $RC = 2 ] || { cat "$WORK/out.check2"; die "check --diff after a role change: exit $RC, expected 2"; }
grep -q "would change builder@agents.javisi.local's role to Admin" "$WORK/out.check2" \
    || { cat "$WORK/out.check2"; die "check --diff does not plan the role change"; }
[ "$(member_role builder@agents.javisi.local)" = 15 ] || die "check changed the role"
run apply3 apply -i hosts.yml site.yml || { cat "$WORK/out.apply3"; die "apply of the role change"; }
[ "$(member_role builder@agents.javisi.local)" = 20 ] || die "builder's role was not changed to Admin"
run check3 check -i hosts.yml site.yml || { cat "$WORK/out.check3"; die "check after the role change"; }

# 5. A token loss: writer's token deleted from the vault.
OLD=$(vault_get vault_plane_writer_token)
dep vault decrypt secrets.yml >/dev/null || die "vault decrypt"
grep -v '^vault_plane_writer_token:' "$P/secrets.yml" >"$P/secrets.yml.new" && mv "$P/secrets.yml.new" "$P/secrets.yml"
chmod 600 "$P/secrets.yml"
dep vault encrypt secrets.yml >/dev/null || die "vault encrypt"
run apply4 apply -i hosts.yml site.yml || { cat "$WORK/out.apply4"; die "apply after a token loss"; }
NEW=$(vault_get vault_plane_writer_token)
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] || die "the lost token was not replaced"
[ "$(v1 "$NEW" /api/v1/users/me/)" = 200 ] || die "the new token does not work"
S=$(v1 "$OLD" /api/v1/users/me/)
[ "$S" = 403 ] || die "the replaced token still answers ($S): not revoked"
grep -q "revoke 1 older token(s) of writer@agents.javisi.local" "$WORK/out.apply4" \
    || { cat "$WORK/out.apply4"; die "the revocation is not reported"; }
run check4 check -i hosts.yml site.yml || { cat "$WORK/out.check4"; die "check after the token loss"; }

# 6. A wrong admin password in the vault: a clear error, nothing changed; the
#    right one back: changed=0.
set_admin_pw() {
    dep vault decrypt secrets.yml >/dev/null || die "vault decrypt"
    { grep -v '^vault_plane_admin_password:' "$P/secrets.yml"; printf 'vault_plane_admin_password: %s\n' "$1"; } >"$P/secrets.yml.new"
    mv "$P/secrets.yml.new" "$P/secrets.yml" && chmod 600 "$P/secrets.yml"
    dep vault encrypt secrets.yml >/dev/null || die "vault encrypt"
}
ADMIN_PW=$(vault_get vault_plane_admin_password)
set_admin_pw "$(rand)"
RC=0; run wrongpw apply -i hosts.yml site.yml || RC=$?
[ $RC = 1 ] || { cat "$WORK/out.wrongpw"; die "a wrong admin password: exit $RC, expected 1"; }
grep -q "sign in as $ADMIN_EMAIL: the admin password in the vault is wrong (Plane error 5065)" "$WORK/out.wrongpw" \
    || { cat "$WORK/out.wrongpw"; die "a wrong admin password is not reported as such"; }
set_admin_pw "$ADMIN_PW"
run apply5 apply -i hosts.yml site.yml --format json || { cat "$WORK/out.apply5"; die "apply with the right admin password back"; }
C5=$(changed <"$WORK/out.apply5")
[ "$C5" = 0 ] || { cat "$WORK/out.apply5"; die "apply after a failed one changed=$C5, expected 0"; }

# 7. An agent email already used by a person's own account (signed up in the
#    app): a clear error naming the agent; that account is not invited.
"$VENV/bin/python" - "http://127.0.0.1:$API_PORT" <<'PYEOF' || die "a human's sign-up"
import http.cookiejar, json, secrets, sys, urllib.parse, urllib.request
base = sys.argv[1]
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
jar = http.cookiejar.CookieJar()
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
op.addheaders = [("User-Agent", "a-browser"), ("Referer", base + "/")]
tok = json.load(op.open(base + "/auth/get-csrf-token/"))["csrf_token"]
form = urllib.parse.urlencode({"email": "human@agents.javisi.local", "password": secrets.token_urlsafe(24),
                               "csrfmiddlewaretoken": tok}).encode()
try:
    op.open(base + "/auth/sign-up/", form)
    sys.exit("sign-up did not redirect")
except urllib.error.HTTPError as e:
    loc = e.headers.get("Location", "")
    if e.code != 302 or "error_code" in loc:
        sys.exit(f"sign-up refused: {e.code} {loc}")
PYEOF
AGENTS2=${AGENTS/role: \"Member\"/role: \"Admin\"}   # builder stays Admin
site "$AGENTS2
  - {id: \"human\", email: \"human@agents.javisi.local\", display_name: \"Not An Agent\", role: \"Member\", avatar: \"\"}" >"$P/site.yml"
RC=0; run human apply -i hosts.yml site.yml || RC=$?
[ $RC = 1 ] || { cat "$WORK/out.human"; die "an agent email of a person's account: exit $RC, expected 1"; }
grep -q "sign in as human@agents.javisi.local: Plane has a user human@agents.javisi.local whose password is not the one stored under vault_plane_human_password (Plane error 5065)" "$WORK/out.human" \
    || { cat "$WORK/out.human"; die "an agent email of a person's account is not reported as such"; }
[ "$(member_role human@agents.javisi.local)" = absent ] || die "the person's account was made a member"
site "$AGENTS2" >"$P/site.yml"
run apply6 apply -i hosts.yml site.yml --format json || { cat "$WORK/out.apply6"; die "apply without that agent"; }

# No secret in any output.
for key in $(dep vault view secrets.yml | sed -n 's/^\(vault_[a-z0-9_]*\):.*/\1/p'); do
    v=$(vault_get "$key")
    [ -n "$v" ] || continue
    for f in "${OUTS[@]}" "$WORK/plane.log"; do
        if grep -qF -- "$v" "$f"; then die "the value of $key appears in $(basename "$f")"; fi
    done
done
if grep -qF -- "$OLD" "${OUTS[@]}"; then die "the old token appears in an output"; fi
# Plane's request log (logger plane.api.request, one JSON line a request).
count() { grep -c -E "$1" "$WORK/plane.log" || true; }
say "Plane's request log: $(count '"name": "plane.api.request"') requests," \
    "$(count '"path": "/(auth/get-csrf-token|api/instances)/".*"user_id": null') anonymous," \
    "$(count '"status_code": 429') answered 429, $(count '"status_code": 5[0-9][0-9]') answered 5xx"
say "PASSED: Plane $TAG from source, 10 agents: apply, apply (changed=0), check, role change, token loss, wrong admin password, an agent email of a person's account ($(lap) in all)"
