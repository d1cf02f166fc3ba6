#!/usr/bin/env bash
# minipool.sh -- smartcache's single-machine HTCondor pool, for developers and CI.
#
# A Debian trixie chroot holds Debian's `htcondor` package (collector, negotiator, schedd, startd,
# DAGMan); the host's Python bindings (PyPI `htcondor`, module htcondor2) talk to it over 127.0.0.1.
# Needs root (debootstrap, mount, chroot). Python callers use smartcache.condor.pool instead.
#
#   minipool.sh up        setup + start (idempotent: reuses an existing chroot and a running pool)
#   minipool.sh setup     debootstrap + apt-get install htcondor + job user + config
#   minipool.sh start     bind-mount host dirs, start condor_master as the job user, wait for ads
#   minipool.sh down      stop condor_master (by pidfile), then unmount everything under the chroot
#   minipool.sh status    daemons and slots, as seen from inside the chroot
#   minipool.sh env       the environment host-side clients need (eval "$(minipool.sh env)")
#   minipool.sh settings  the effective settings;  minipool.sh binds   the dirs bound into the chroot
#   minipool.sh exec CMD  run CMD (e.g. condor_q -nobatch) inside the chroot with the pool's config
#
# Settings (environment):
#   SMARTCACHE_POOL_ROOT    chroot location [/opt/smartcache-pool]; never inside a bound dir (/tmp!)
#   SMARTCACHE_POOL_PORT    collector port on 127.0.0.1 [9618]
#   SMARTCACHE_POOL_CPUS    CPUs of the base startd [4];  SMARTCACHE_POOL_MEMORY  MB [detected]
#   SMARTCACHE_POOL_USER / SMARTCACHE_POOL_UID   job user [smartcache / 2000]
#     (port, CPUs, memory and user, once set up, stay as they were unless given again)
#   SMARTCACHE_POOL_REPO    checkout bound into the chroot [derived from this script's location]
#   SMARTCACHE_POOL_PYTHON  interpreter whose sys.prefix and sys.base_prefix are bound [repo .venv]
#   SMARTCACHE_HOME         smartcache home (catalog, runs) bound into the chroot [~/.smartcache]
#   SMARTCACHE_POOL_BINDS   more host dirs to bind, space separated
#   SMARTCACHE_POOL_SUITE / SMARTCACHE_POOL_MIRROR   Debian suite and mirror [trixie / deb.debian.org]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
R=${SMARTCACHE_POOL_ROOT:-/opt/smartcache-pool}
case "$R" in /*) ;; *) R=$PWD/$R ;; esac       # absolute: <root> is also a path inside the chroot
R=${R%/}
# A pool set up before keeps its settings unless they are given again: re-running `up` with a
# bare environment must not move a running pool to another port behind its users' backs.
previous() {
  [ -f "$R/etc/condor/condor_config" ] || return 0
  awk -v k="$1" '$1 == k && $2 == "=" { sub(/^[^=]*= */, ""); print; exit }' "$R/etc/condor/condor_config"
}
PORT=${SMARTCACHE_POOL_PORT:-$(previous SMARTCACHE_POOL_PORT)}; PORT=${PORT:-9618}
CPUS=${SMARTCACHE_POOL_CPUS:-$(previous SMARTCACHE_POOL_CPUS)}; CPUS=${CPUS:-4}
MEMORY=${SMARTCACHE_POOL_MEMORY:-$(previous MEMORY)}
JOB_USER=${SMARTCACHE_POOL_USER:-$(previous SMARTCACHE_POOL_USER)}; JOB_USER=${JOB_USER:-smartcache}
JOB_UID=${SMARTCACHE_POOL_UID:-2000}
SUITE=${SMARTCACHE_POOL_SUITE:-trixie}
MIRROR=${SMARTCACHE_POOL_MIRROR:-http://deb.debian.org/debian}
REPO=${SMARTCACHE_POOL_REPO:-$(cd "$HERE/../.." && pwd)}
SC_HOME=${SMARTCACHE_HOME:-${HOME:-/root}/.smartcache}
STATE=/var/lib/condor/smartcache-pool          # pool state, path inside the chroot
PIDFILE=$R$STATE/run/master.pid
CONFIG_D=$R/etc/condor/config.d
SETUP_LOG=$R.setup.log                         # beside the chroot, not inside a bound dir
WAIT_SECS=${SMARTCACHE_POOL_WAIT:-120}

say() { printf '[minipool %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "error: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot); run it as root or in CI"; }

# Run a command inside the chroot as root with a clean environment.
chrooted() {
  chroot "$R" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}

# retry N DELAY CMD...: network steps fail now and then; debootstrap itself never retries.
retry() {
  local n=$1 delay=$2 i; shift 2
  for ((i = 1; i <= n; i++)); do
    "$@" && return 0
    [ "$i" -lt "$n" ] && { say "attempt $i/$n failed: $*; again in ${delay}s"; sleep "$delay"; }
  done
  return 1
}

# ---- what is bound into the chroot (same path inside and outside) ---------------------------
python_prefixes() {
  local py=${SMARTCACHE_POOL_PYTHON:-}
  [ -z "$py" ] && [ -x "$REPO/.venv/bin/python" ] && py=$REPO/.venv/bin/python
  [ -z "$py" ] && py=$(command -v python3 || true)
  [ -n "$py" ] && "$py" -c 'import sys; print(sys.prefix); print(sys.base_prefix)' 2>/dev/null || true
}

# Unique, existing, absolute dirs; a dir inside another listed dir is covered by its parent's bind.
# System dirs are never bound: a system Python (sys.base_prefix = /usr) would hide the chroot's own.
bind_dirs() {
  local d
  { printf '%s\n' /tmp "$REPO" "$SC_HOME"; python_prefixes; printf '%s\n' ${SMARTCACHE_POOL_BINDS:-}; } |
    while read -r d; do
      if [ -n "$d" ] && [ -d "$d" ]; then (cd "$d" && pwd -P); fi
    done | sort -u | while read -r d; do
      case "$d" in
        / | /usr | /usr/local | /bin | /sbin | /lib | /lib64 | /etc | /var | /opt | /root | /home | \
        /proc | /sys | /dev | /run | /boot | /srv | /mnt)
          say "not binding system dir $d into the chroot (jobs cannot use a Python installed there)" ;;
        *) echo "$d" ;;
      esac
    done | awk '{ for (i in kept) if (index($0 "/", kept[i] "/") == 1) next; kept[NR] = $0; print }'
}

check_layout() {   # the chroot must not live inside a bound dir, nor contain one
  local d
  for d in $(bind_dirs); do
    case "$R/" in "$d"/*) die "SMARTCACHE_POOL_ROOT=$R is inside $d, which is bind-mounted into it";; esac
    case "$d/" in "$R"/*) die "$d is inside the chroot $R";; esac
    if [ "$d" = / ]; then die "refusing to bind / into the chroot"; fi
  done
  return 0
}

mounts_under() { awk -v r="$R/" 'index($2 "/", r) == 1 { print $2 }' /proc/mounts | sort -ru; }

mount_all() {
  mkdir -p "$SC_HOME"
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  if ! mountpoint -q "$R/dev"; then
    mount --rbind /dev "$R/dev"
    mount --make-rslave "$R/dev"     # unmounting our copy must never propagate to the host's /dev
  fi
  local d
  for d in $(bind_dirs); do
    mkdir -p "$R$d"
    if ! mountpoint -q "$R$d"; then
      mount --bind "$d" "$R$d"
      mount --make-rslave "$R$d"
    fi
  done
}

unmount_all() {    # deepest first; lazily if busy; twice, for rbind submounts that reappear
  local m pass
  for pass in 1 2; do
    for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  [ -z "$(mounts_under)" ] || die "still mounted under $R: $(mounts_under | tr '\n' ' ')"
}

# ---- setup ---------------------------------------------------------------------------------
bootstrap_chroot() {
  [ -f "$R/.smartcache-bootstrap-ok" ] && return 0
  command -v debootstrap >/dev/null ||
    retry 3 10 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >>"$SETUP_LOG" 2>&1 ||
    die "cannot install debootstrap (see $SETUP_LOG)"
  local i t0=$SECONDS
  for i in 1 2 3; do
    # A half-made chroot is removed before trying again, but never through a mount point.
    [ -z "$(mounts_under)" ] || unmount_all
    if [ -e "$R" ]; then
      [ -z "$(mounts_under)" ] || die "mounts remain under $R; not deleting it"
      rm -rf --one-file-system "$R"
    fi
    say "debootstrap $SUITE into $R (attempt $i)"
    if debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" >>"$SETUP_LOG" 2>&1; then
      touch "$R/.smartcache-bootstrap-ok"
      say "debootstrap took $((SECONDS - t0))s"
      return 0
    fi
    tail -n 5 "$SETUP_LOG" >&2
    sleep 10
  done
  die "debootstrap failed 3 times (see $SETUP_LOG)"
}

apt_in_chroot() {
  chrooted apt-get -q -o Acquire::Retries=5 update &&
  chrooted env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Acquire::Retries=5 \
    --no-install-recommends htcondor
}

install_htcondor() {
  [ -x "$R/usr/sbin/condor_master" ] && return 0
  local t0=$SECONDS
  say "apt-get install htcondor inside the chroot"
  sed -i 's/^hosts:.*/hosts:          files dns/' "$R/etc/nsswitch.conf"
  cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
  retry 3 10 apt_in_chroot >>"$SETUP_LOG" 2>&1 || die "apt-get install htcondor failed (see $SETUP_LOG)"
  chrooted apt-get clean
  say "apt-get took $((SECONDS - t0))s"
}

# The top-level config is read by the daemons inside the chroot and by clients on the host, under
# the same name: every path in it starts with $R, which also resolves inside the chroot (the
# symlink $R$R -> / made by configure), so host tools find the local schedd's address file too.
write_config() {
  local was; was=$(previous SMARTCACHE_POOL_PORT)
  if master_alive && [ -n "$was" ] && [ "$was" != "$PORT" ]; then
    die "the pool runs on port $was; 'minipool.sh down' before moving it to $PORT"
  fi
  [ -f "$R/etc/condor/condor_config.debian" ] || cp "$R/etc/condor/condor_config" "$R/etc/condor/condor_config.debian"
  cat >"$R/etc/condor/condor_config" <<EOF
# smartcache minipool: written by minipool.sh (Debian's original: condor_config.debian).
# Valid on the host and inside the chroot: $R resolves to / inside it.
SMARTCACHE_POOL_ROOT  = $R
SMARTCACHE_POOL_USER  = $JOB_USER
SMARTCACHE_POOL_PORT  = $PORT
SMARTCACHE_POOL_CPUS  = $CPUS
SMARTCACHE_POOL_STATE = $STATE
RELEASE_DIR = /usr
ETC         = \$(SMARTCACHE_POOL_ROOT)/etc/condor
LOCAL_DIR   = \$(SMARTCACHE_POOL_ROOT)\$(SMARTCACHE_POOL_STATE)
LOCAL_CONFIG_FILE =
REQUIRE_LOCAL_CONFIG_FILE = False
LOCAL_CONFIG_DIR = \$(SMARTCACHE_POOL_ROOT)/usr/share/condor/config.d, \$(ETC)/config.d
BIN     = \$(RELEASE_DIR)/bin
SBIN    = \$(RELEASE_DIR)/sbin
LIB     = \$(RELEASE_DIR)/lib/condor
LIBEXEC = \$(RELEASE_DIR)/libexec/condor
SHARE   = \$(RELEASE_DIR)/share/condor
EOF
  [ -n "$MEMORY" ] && echo "MEMORY = $MEMORY" >>"$R/etc/condor/condor_config"
  rm -f "$CONFIG_D/40-smartcache-pool-params.config"
  install -m 644 "$HERE/pool.config" "$CONFIG_D/50-smartcache-pool.config"
}

configure() {
  printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"     # packages never start services
  chmod 755 "$R/usr/sbin/policy-rc.d"
  cp /etc/hosts "$R/etc/hosts"
  sed -i 's/^hosts:.*/hosts:          files/' "$R/etc/nsswitch.conf"   # the pool needs no DNS
  chrooted id -u "$JOB_USER" >/dev/null 2>&1 ||
    chrooted useradd -u "$JOB_UID" -U -m -d "/home/$JOB_USER" -s /bin/bash "$JOB_USER"
  write_config
  mkdir -p "$R$STATE"/{log,spool,execute,lock,run,cred_dir} "$R/var/lib/condor/workers"
  chrooted chown -R "$JOB_USER:$JOB_USER" "$STATE" /var/lib/condor/workers
  # Jobs run as the job user: every parent of a bound dir (e.g. /root for /root/.pyenv) must be
  # traversable inside the chroot.
  chmod 755 "$R/var/lib/condor" "$R/root"
  # The host path of the chroot also resolves inside it, so a CONDOR_CONFIG (or any path) given
  # as $R/... on the host is valid for the daemons and for jobs (DAGMan inherits CONDOR_CONFIG).
  mkdir -p "$(dirname "$R$R")"
  [ -L "$R$R" ] || ln -s / "$R$R"
  # Submit.from_dag finds condor_dagman on PATH and writes that path into the DAGMan job, which the
  # schedd then runs inside the chroot: /usr/local/bin/condor_dagman exists on both sides.
  ln -sfn /usr/bin/condor_dagman "$R/usr/local/bin/condor_dagman"
  if [ -L /usr/local/bin/condor_dagman ] && [ ! -e /usr/local/bin/condor_dagman ]; then
    rm -f /usr/local/bin/condor_dagman    # dangling: left by a chroot that is gone
  fi
  [ -e /usr/local/bin/condor_dagman ] || ln -s "$R/usr/bin/condor_dagman" /usr/local/bin/condor_dagman
}

cmd_setup() {
  need_root
  check_layout
  mkdir -p "$(dirname "$R")"
  : >>"$SETUP_LOG"
  bootstrap_chroot
  install_htcondor
  configure
  say "setup done: $R (log $SETUP_LOG)"
}

# ---- start / stop --------------------------------------------------------------------------
master_pid() { [ -f "$PIDFILE" ] && cat "$PIDFILE"; }

master_alive() {   # condor_master daemonizes: a zombie in /proc/PID/stat is not a live master
  local p; p=$(master_pid) || return 1
  alive_in_chroot "$p"
}

pool_ads_present() {
  [ -n "$(chrooted condor_status -af Name 2>/dev/null)" ] &&
    [ -n "$(chrooted condor_status -schedd -af Name 2>/dev/null)" ]
}

port_taken() { grep -q ":$(printf '%04X' "$PORT") 00000000:0000 0A" /proc/net/tcp 2>/dev/null; }

cmd_start() {
  need_root
  check_layout
  [ -x "$R/usr/sbin/condor_master" ] || die "no pool in $R; run 'minipool.sh setup' first"
  mount_all
  if master_alive; then
    say "already running (condor_master pid $(master_pid))"
  else
    port_taken && die "port $PORT on 127.0.0.1 is in use (another pool?); set SMARTCACHE_POOL_PORT"
    rm -f "$PIDFILE"
    JOB_UID=$(chrooted id -u "$JOB_USER") || die "no user $JOB_USER in $R; run 'minipool.sh setup'"
    # Ambient CAP_DAC_OVERRIDE/CAP_FOWNER let the unprivileged pool (DAGMan, jobs) write into
    # root-owned dirs made by a root test run. Each parent dir still needs o+x: HTCondor checks a
    # job's initialdir itself, without regard to capabilities.
    chroot "$R" /usr/bin/setpriv --reuid="$JOB_UID" --regid="$JOB_UID" --clear-groups \
      --inh-caps=+dac_override,+fowner --ambient-caps=+dac_override,+fowner -- \
      /usr/bin/env -i HOME="/home/$JOB_USER" USER="$JOB_USER" LOGNAME="$JOB_USER" \
      PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      /usr/sbin/condor_master -pidfile "$STATE/run/master.pid" 9>&-   # the master must not hold our lock
  fi
  local t0=$SECONDS
  until pool_ads_present; do
    if [ $((SECONDS - t0)) -ge "$WAIT_SECS" ]; then
      say "pool not up after ${WAIT_SECS}s; last log lines:"
      tail -n 20 "$R$STATE"/log/{MasterLog,CollectorLog,StartLog,SchedLog} >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  say "pool up in $((SECONDS - t0))s (condor_master pid $(master_pid), collector 127.0.0.1:$PORT)"
}

alive_in_chroot() {   # PID: a live, non-zombie process whose root is our chroot
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ] &&
    [ "$(readlink "/proc/$1/root")" = "$R" ]
}

stop_workers() {   # elastic workers (smartcache.condor.workers, backend "local") go first
  local f p pids=() t0=$SECONDS
  for f in "$R"/var/lib/condor/workers/w*/run/master.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if alive_in_chroot "$p"; then kill -TERM "$p" && pids+=("$p"); fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  say "stopping ${#pids[@]} elastic worker(s)"
  for p in "${pids[@]}"; do
    while alive_in_chroot "$p" && [ $((SECONDS - t0)) -lt 60 ]; do sleep 0.5; done
  done
}

cmd_down() {
  need_root
  stop_workers
  if master_alive; then
    local p t0=$SECONDS
    p=$(master_pid)
    say "stopping condor_master pid $p"
    kill -TERM "$p"                      # graceful: the master stops its daemons and jobs
    while master_alive && [ $((SECONDS - t0)) -lt 60 ]; do sleep 0.5; done
    if master_alive; then say "still alive after 60s: SIGQUIT"; kill -QUIT "$p" || true; sleep 5; fi
  fi
  unmount_all
  say "down"
}

cmd_status() {
  if master_alive; then echo "running: condor_master pid $(master_pid), root $R"; else echo "stopped: root $R"; fi
  master_alive || return 0
  chrooted condor_status -any -af MyType Name
  chrooted condor_status -af Name State Activity Cpus Memory
}

cmd_env() {
  cat <<EOF
export CONDOR_CONFIG=$R/etc/condor/condor_config
export PATH=/usr/local/bin:\$PATH
EOF
}

# One caller at a time changes the pool (CI and a developer's shell, parallel test sessions).
lock() { need_root; mkdir -p "$(dirname "$R")"; exec 9>>"$R.lock"; flock -w 600 9 || die "another minipool.sh holds $R.lock"; }

case "${1:-}" in
  up) lock; cmd_setup; cmd_start ;;
  setup) lock; cmd_setup ;;
  start) lock; cmd_start ;;
  down | stop) lock; cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  binds) bind_dirs ;;
  settings) echo "root=$R port=$PORT cpus=$CPUS memory=${MEMORY:-auto} user=$JOB_USER uid=$JOB_UID repo=$REPO" ;;
  exec) shift; [ $# -gt 0 ] || die "exec needs a command"; need_root; chrooted "$@" ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
