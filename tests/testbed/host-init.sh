#!/bin/sh
# Runs as the command of each testbed host container (PID 1 under docker-init).
# Its text is passed to `sh -c` by up.sh. Inputs (environment):
#   TESTBED_PUBKEY     public key allowed for root and deploy
#   TESTBED_DOCKER_GID gid of the host's /var/run/docker.sock (deploy joins it)
#   TESTBED_INIT_ONLY  set: prepare and return (systemd hosts run sshd as a unit)
set -eu

mkdir -p /run/sshd
chmod 0755 /run/sshd
# Host keys are stripped from the image, so every container gets its own.
ssh-keygen -A

if ! id deploy >/dev/null 2>&1; then
  useradd --create-home --home-dir /home/deploy --shell /bin/bash deploy
  # '*' = no password, but not "locked" (sshd refuses locked accounts without PAM).
  usermod -p '*' deploy
fi
printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' >/etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy

if [ -n "${TESTBED_DOCKER_GID:-}" ]; then
  group=$(getent group "$TESTBED_DOCKER_GID" | cut -d: -f1 || true)
  if [ -z "$group" ]; then
    if getent group docker >/dev/null; then
      groupmod -g "$TESTBED_DOCKER_GID" docker
    else
      groupadd -g "$TESTBED_DOCKER_GID" docker
    fi
    group=docker
  fi
  usermod -aG "$group" deploy
fi

for home in /root /home/deploy; do
  owner=$(stat -c %U "$home")
  mkdir -p "$home/.ssh"
  printf '%s\n' "$TESTBED_PUBKEY" >"$home/.ssh/authorized_keys"
  chmod 0700 "$home/.ssh"
  chmod 0600 "$home/.ssh/authorized_keys"
  chown -R "$owner:" "$home/.ssh"
done

cat >/etc/ssh/sshd_config.d/testbed.conf <<'CONF'
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
MaxSessions 100
MaxStartups 100:30:200
LogLevel VERBOSE
CONF
/usr/sbin/sshd -t

if [ -n "${TESTBED_INIT_ONLY:-}" ]; then
  exit 0
fi
exec /usr/sbin/sshd -D -e
