#!/usr/bin/env bash
# A throw-away S3 server for the tests: single-node Ceph (monitor + in-memory OSD + RGW gateway)
# listening on 127.0.0.1 only. Data lives in memory, so every start is a clean cluster.
#
#   scripts/s3-server.sh start DIR [PORT]   # prints the endpoint; PORT defaults to 7480
#   scripts/s3-server.sh stop DIR           # stops only the daemons whose pid files are in DIR
#
# Credentials: access key TESTACCESSKEY, secret TESTSECRETKEY; bucket tidemark-test exists.
# The monitor port is PORT+9309 (16789 for the default) so several servers can run side by side.
# Then: TIDEMARK_S3_ENDPOINT=http://127.0.0.1:PORT build/test_storage_s3
set -Eeuo pipefail  # -E: functions run the ERR trap too
# A failing step names itself (set -e alone ends the script silently), with the daemons' logs.
trap 'echo "s3-server.sh: failed at line $LINENO: $BASH_COMMAND (daemon logs: ${d:-DIR}/log)" >&2' ERR

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }

# Runs a monitor command until it succeeds, up to 10 times a second apart: on a loaded machine
# a command right after the OSD's creation was refused once (a CI run stopped at 'osd crush
# add'). The commands used with it are idempotent. On the last failure its output is shown.
mon_cmd() {
  local out i
  for i in $(seq 1 10); do
    if out=$("$@" 2>&1); then printf '%s' "$out"; return 0; fi
    sleep 1
  done
  echo "s3-server.sh: '$*' failed 10 times; last output: $out" >&2
  return 1
}

stop_server() {
  local d=$1 n f p
  for n in client.rgw.a osd.0 mon.a; do
    f="$d/run/$n.pid"; [ -f "$f" ] || continue
    p=$(cat "$f")
    # Only signal the pid if it is still the daemon we started (pids get reused).
    if grep -q -- "$d/ceph.conf" "/proc/$p/cmdline" 2>/dev/null; then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

install_if_missing() {
  command -v radosgw >/dev/null && command -v ceph-osd >/dev/null && command -v ceph-mon >/dev/null && return
  echo "installing ceph-mon ceph-osd radosgw (about 40 s)..." >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw >/dev/null
}

start_server() {
  local d=$1 port=$2 monport=$(( $2 + 9309 ))
  install_if_missing
  [ -d "$d" ] && stop_server "$d"
  rm -rf "$d"; mkdir -p "$d"/{mon,osd0,log,run,rgw}
  local fsid c="$d/ceph.conf"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat > "$c" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$monport
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
run dir = $d/run
log file = $d/log/\$name.log
pid file = $d/run/\$name.pid
admin socket = $d/run/\$name.asok
keyring = $d/keyring
[mon]
mon data = $d/mon
[osd]
osd data = $d/osd0
osd objectstore = memstore
memstore device bytes = 2147483648
osd memory target = 1073741824
osd op num shards = 1
osd op num threads per shard = 2
# avoids an OSD->mon command at boot that races the monmap ('wrong fsid' with fsid 0)
osd crush update on start = false
osd class update on start = false
[client]
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw data = $d/rgw
rgw dns name = localhost
rgw enable usage log = false
rgw thread pool size = 64
CONF
  ceph-authtool --create-keyring "$d/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --addv a "[v1:127.0.0.1:$monport]" --fsid "$fsid" "$d/monmap" >/dev/null
  ceph-mon -c "$c" -i a --mkfs --monmap "$d/monmap" --keyring "$d/keyring"
  ceph-mon -c "$c" -i a
  local uuid osdid
  uuid=$(cat /proc/sys/kernel/random/uuid)
  osdid=$(ceph -c "$c" --connect-timeout 30 osd new "$uuid")
  ceph-osd -c "$c" -i "$osdid" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
  mon_cmd ceph -c "$c" osd crush add-bucket localhost host >/dev/null
  mon_cmd ceph -c "$c" osd crush move localhost root=default >/dev/null
  mon_cmd ceph -c "$c" osd crush add "osd.$osdid" 1.0 host=localhost >/dev/null
  ceph-osd -c "$c" -i "$osdid"
  for _ in $(seq 1 120); do ceph -c "$c" osd stat 2>/dev/null | grep -q "1 up" && break; sleep 0.5; done
  radosgw -c "$c" -n client.rgw.a
  local up=""
  for _ in $(seq 1 240); do curl -s -o /dev/null "http://127.0.0.1:$port/" && { up=1; break; }; sleep 0.5; done
  [ -n "$up" ] || { echo "radosgw did not answer on 127.0.0.1:$port; see $d/log" >&2; exit 1; }
  radosgw-admin -c "$c" user create --uid=test --display-name=test \
    --access-key=TESTACCESSKEY --secret-key=TESTSECRETKEY >/dev/null
  # The payload hash header is required by RGW (libcurl's SigV4 does not add it).
  curl -sf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user TESTACCESSKEY:TESTSECRETKEY \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://127.0.0.1:$port/tidemark-test" >/dev/null
  echo "http://127.0.0.1:$port"
}

case "${1:-}" in
  start) [ $# -ge 2 ] || usage; start_server "$(realpath -m "$2")" "${3:-7480}" ;;
  stop) [ $# -eq 2 ] || usage; stop_server "$(realpath -m "$2")" ;;
  *) usage ;;
esac
