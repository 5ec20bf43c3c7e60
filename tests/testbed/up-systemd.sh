#!/usr/bin/env bash
# Bring up N testbed hosts with systemd as PID 1 (default N=2), next to the
# plain hosts of up.sh, for the service/systemd/package module tests:
#   deployer-<id>s1..N on 127.0.0.1:(PORT_BASE+50+1).., hostnames sd1..N,
#   users root and deploy (passwordless sudo), same key as up.sh's hosts.
# Writes (gitignored): tests/testbed/state/systemd/{known_hosts,ssh_config}
#                      tests/testbed/inventory-systemd.yml
# Needs up.sh's image and key (run up.sh first). Re-runnable.
#
# With --db: N hosts (default 2) that also run PostgreSQL 15 and MariaDB
# (Debian's postgresql, mariadb-server, with python3-psycopg2 and
# python3-pymysql so ansible-playbook runs the community.postgresql and
# community.mysql modules there, and acl, which Ansible's become to an
# unprivileged user such as postgres needs), for the database module tests:
#   deployer-<id>d1..N on 127.0.0.1:(PORT_BASE+60+1).., hostnames db1..N,
#   tests/testbed/state/db/{known_hosts,ssh_config}, tests/testbed/inventory-db.yml
#   (group db_hosts). Image deployer-testbed-host:bookworm-db, made the same way.
#
# The image deployer-testbed-host:bookworm-systemd is made from up.sh's image
# (debootstrap, no registry) by installing Debian's systemd, systemd-sysv,
# dbus, iproute2, cron, procps and python3-apt (what Ansible's apt module
# needs; without it Ansible installs it, refreshing the cache), python3-debian
# (Ansible's deb822_repository), gnupg (apt_key), locales (locale_gen),
# python3-pip and python3-venv (pip) from the Debian mirror, then committing.
set -euo pipefail

DB=
if [[ ${1:-} == --db ]]; then
  DB=1
  shift
fi
N=${1:-2}
if ! [[ $N =~ ^[1-9]$ ]]; then
  echo "usage: $0 [--db] [N]   (1..9 hosts, default 2)" >&2
  exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=$HERE/state
KEY=$STATE/id_ed25519
BASE_IMAGE=deployer-testbed-host:bookworm
LABEL=deployer-testbed
ID=${TESTBED_ID:-tb}
PORT_BASE=${TESTBED_PORT_BASE:-2220}
if [[ -n $DB ]]; then
  SDSTATE=$STATE/db
  INVENTORY=$HERE/inventory-db.yml
  IMAGE=deployer-testbed-host:bookworm-db
  RECIPE_LABEL=deployer.testbed.db
  SD_BASE=$((PORT_BASE + 60))
  PREFIX=d    # containers deployer-<id>d1..
  HOSTNAME_PREFIX=db
  GROUP=db_hosts
  PACKAGES="systemd systemd-sysv dbus iproute2 cron procps python3-apt postgresql mariadb-server python3-psycopg2 python3-pymysql acl"
else
  SDSTATE=$STATE/systemd
  INVENTORY=$HERE/inventory-systemd.yml
  IMAGE=deployer-testbed-host:bookworm-systemd
  RECIPE_LABEL=deployer.testbed.systemd
  SD_BASE=$((PORT_BASE + 50))
  PREFIX=s
  HOSTNAME_PREFIX=sd
  GROUP=systemd_hosts
  PACKAGES="systemd systemd-sysv dbus iproute2 cron procps python3-apt python3-debian gnupg locales python3-pip python3-venv"
fi
KNOWN_HOSTS=$SDSTATE/known_hosts
SSH_CONFIG=$SDSTATE/ssh_config

log() { printf '[up-systemd] %s\n' "$*" >&2; }

if [[ ! -s $KEY ]] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "run tests/testbed/up.sh first (it builds $BASE_IMAGE and the key)"
  exit 1
fi

# --- image -------------------------------------------------------------------
# The recipe (base image id + packages) is a label: a new base or package list
# rebuilds it.
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
RECIPE_ID=$(printf 'v2 %s %s' "$base_id" "$PACKAGES" | sha256sum | cut -c1-12)
have=$(docker image inspect -f "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [[ $have == "$RECIPE_ID" ]]; then
  log "image $IMAGE present"
else
  builder=deployer-build-$HOSTNAME_PREFIX-$ID
  docker rm -f "$builder" >/dev/null 2>&1 || true
  log "building $IMAGE (apt-get install $PACKAGES from the Debian mirror)"
  start=$SECONDS
  docker run --name "$builder" "$BASE_IMAGE" /bin/sh -c "
    set -e
    export DEBIAN_FRONTEND=noninteractive
    # No service starts here (no init): the database servers start under
    # systemd in the containers, with no stale pid file from the build.
    printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
    rm -f /usr/sbin/policy-rc.d
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    # sshd starts once host-init.sh has made the host keys (below).
    systemctl disable ssh >/dev/null 2>&1
    # No consoles in a container; logind is not needed for SSH sessions.
    systemctl mask getty@tty1.service console-getty.service systemd-logind.service >/dev/null 2>&1
    : >/etc/machine-id
  " >&2
  docker commit \
    --change "LABEL $RECIPE_LABEL=$RECIPE_ID" \
    --change 'CMD ["/sbin/init"]' \
    "$builder" "$IMAGE" >/dev/null
  docker rm "$builder" >/dev/null
  log "built $IMAGE in $((SECONDS - start)) s"
fi

# --- containers ----------------------------------------------------------------
for i in $(seq 1 9); do
  docker rm -f "deployer-${ID}$PREFIX$i" >/dev/null 2>&1 || true
done
PUBKEY=$(cat "$KEY.pub")
INIT_SCRIPT=$(cat "$HERE/host-init.sh")
for i in $(seq 1 "$N"); do
  # systemd needs writable /run and its cgroup hierarchy; nothing else
  # beyond a plain host's privileges.
  docker run -d \
    --name "deployer-${ID}$PREFIX$i" --hostname "$HOSTNAME_PREFIX$i" \
    --label "$LABEL=$ID" \
    --stop-signal SIGRTMIN+3 \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -e container=docker \
    -p "127.0.0.1:$((SD_BASE + i)):22" \
    "$IMAGE" >/dev/null
done
for i in $(seq 1 "$N"); do
  c=deployer-${ID}$PREFIX$i
  for _ in $(seq 1 100); do
    state=$(docker exec "$c" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 0.2
  done
  if [[ $state != running && $state != degraded ]]; then
    docker logs "$c" 2>&1 | tail -n 30 >&2
    log "$c: systemd did not come up (state '$state')"
    exit 1
  fi
  # Users, keys and sshd config as on the plain hosts; sshd is the unit.
  docker exec -e "TESTBED_PUBKEY=$PUBKEY" -e TESTBED_INIT_ONLY=1 "$c" /bin/sh -c "$INIT_SCRIPT" >/dev/null
  docker exec "$c" systemctl start ssh
  if [[ -n $DB ]]; then
    for _ in $(seq 1 100); do
      docker exec "$c" systemctl is-active -q postgresql@15-main mariadb && break
      sleep 0.2
    done
    if ! docker exec "$c" systemctl is-active -q postgresql@15-main mariadb; then
      docker exec "$c" systemctl status --no-pager postgresql@15-main mariadb 2>&1 | tail -n 30 >&2
      log "$c: the database servers did not start"
      exit 1
    fi
  fi
done
log "started $N systemd hosts"

# --- known_hosts, ssh_config, inventory -------------------------------------------
mkdir -p "$SDSTATE"
chmod 0700 "$SDSTATE"
: >"$KNOWN_HOSTS.tmp"
for i in $(seq 1 "$N"); do
  read -r keytype keydata _ < <(docker exec "deployer-${ID}$PREFIX$i" cat /etc/ssh/ssh_host_ed25519_key.pub)
  printf '[127.0.0.1]:%d %s %s\n' "$((SD_BASE + i))" "$keytype" "$keydata" >>"$KNOWN_HOSTS.tmp"
done
mv "$KNOWN_HOSTS.tmp" "$KNOWN_HOSTS"
{
  echo "# Generated by tests/testbed/up-systemd.sh; use: ssh -F $SSH_CONFIG ${HOSTNAME_PREFIX}1"
  for i in $(seq 1 "$N"); do
    cat <<CONF
Host $HOSTNAME_PREFIX$i
  HostName 127.0.0.1
  Port $((SD_BASE + i))
  User deploy
  IdentityFile $KEY
  IdentitiesOnly yes
  UserKnownHostsFile $KNOWN_HOSTS
  StrictHostKeyChecking yes
  BatchMode yes

CONF
  done
} >"$SSH_CONFIG"
{
  echo "# Generated by tests/testbed/up-systemd.sh"
  echo "all:"
  echo "  children:"
  echo "    $GROUP:"
  echo "      hosts:"
  for i in $(seq 1 "$N"); do
    echo "        $HOSTNAME_PREFIX$i: {ansible_host: 127.0.0.1, ansible_port: $((SD_BASE + i))}"
  done
  echo "  vars:"
  echo "    ansible_user: deploy"
  echo "    ansible_become: true"
  echo "    ansible_python_interpreter: /usr/bin/python3"
  echo "    ansible_ssh_private_key_file: $KEY"
  echo "    ansible_ssh_common_args: \"-o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes\""
} >"$INVENTORY"

for i in $(seq 1 "$N"); do
  ok=
  for _ in $(seq 1 60); do
    if ssh -F "$SSH_CONFIG" -o ConnectTimeout=3 "$HOSTNAME_PREFIX$i" 'sudo -n true' 2>/dev/null &&
      ssh -F "$SSH_CONFIG" -o ConnectTimeout=3 "root@$HOSTNAME_PREFIX$i" true 2>/dev/null; then
      ok=1
      break
    fi
    sleep 0.5
  done
  if [[ -z $ok ]]; then
    docker exec "deployer-${ID}$PREFIX$i" journalctl -u ssh --no-pager 2>&1 | tail -n 20 >&2
    log "$HOSTNAME_PREFIX$i does not accept ssh"
    exit 1
  fi
done
log "$N systemd hosts ready: ssh -F $SSH_CONFIG ${HOSTNAME_PREFIX}1   (inventory: $INVENTORY)"
