#!/usr/bin/env bash
# Stop the one-node cluster started by node-up.sh (exactly the recorded pids)
# and undo every host change it made: pod sandboxes and their network
# namespaces, mounts, cgroups, the bridge, the node address, the service
# route, the forward guard, kube-proxy's and the kubelet's firewall tables,
# and the sysctls. Safe to run twice, and after a node-up.sh that failed
# half-way. The registry's data (pushed images) stays in the cache.
#
# Usage: node-down.sh [RUN_DIR]   (default: <repo>/target/k8s-node)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${1:-${K8S_NODE_RUN:-$ROOT/target/k8s-node}}"
[ -d "$RUN" ] || exit 0
RUN="$(cd "$RUN" && pwd)"
NODE_IP=10.250.0.1
BRIDGE=knode0
SERVICE_CIDR=10.0.0.0/24

stop() { # stop PIDFILE: TERM, wait up to 10 s, then KILL
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
}

# the gateway and the metrics pipeline first: they watch the API server
stop "$RUN/traefik/traefik.pid"
stop "$RUN/metrics-server/metrics-server.pid"
stop "$RUN/proxy/proxy.pid"
if [ -x "$("$HERE/build.sh" 2>/dev/null)/kube-proxy" ] && [ -f "$RUN/proxy/config.yaml" ]; then
  "$("$HERE/build.sh")/kube-proxy" --cleanup --config="$RUN/proxy/config.yaml" >/dev/null 2>&1
fi
stop "$RUN/kubelet/kubelet.pid"
# every pod sandbox and container the kubelet left in containerd; removing a
# sandbox task runs the CNI DEL that frees its address and veth
SOCK="$RUN/containerd/containerd.sock"
if [ -S "$SOCK" ]; then
  C="ctr --address $SOCK -n k8s.io"
  for t in $($C tasks ls -q 2>/dev/null); do $C tasks kill -s KILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $($C tasks ls -q 2>/dev/null); do $C tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $($C containers ls -q 2>/dev/null); do $C containers delete "$c" >/dev/null 2>&1; done
fi
stop "$RUN/containerd/containerd.pid"
# containerd-shim processes of this run outlive containerd by design
for p in $(pgrep -f "containerd-shim.*-address $SOCK" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
stop "$RUN/coredns/coredns.pid"
stop "$RUN/control/scheduler.pid"
"$HERE/down.sh" "$RUN/control" >/dev/null 2>&1
stop "$RUN/registry/forward.pid"
stop "$RUN/registry/registry.pid"

# mounts under the run directory and the pods' network namespaces, deepest first
grep -E " ($RUN|/run/netns/cni-|/run/containerd/io.containerd)" /proc/mounts | awk '{print $2}' |
  sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
rm -f /run/netns/cni-* 2>/dev/null
rmdir /run/netns 2>/dev/null
# cgroups the kubelet made (cgroupfs driver), deepest first
for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  [ -d "$root/kubepods" ] && find "$root/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# network: the bridge (and any veth left on it), the route, the node address,
# the forward guard, kube-proxy's tables, the kubelet's iptables chains
for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  ip link del "$v" 2>/dev/null
done
ip link del "$BRIDGE" 2>/dev/null
ip route del "$SERVICE_CIDR" 2>/dev/null
ip addr del "$NODE_IP/32" dev lo 2>/dev/null
nft delete table inet kubeless_node_guard 2>/dev/null
nft delete table ip kube-proxy 2>/dev/null
nft delete table ip6 kube-proxy 2>/dev/null
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null || continue
  $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null
  $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
  for t in filter nat mangle; do
    for ch in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
      $ipt -t "$t" -F "$ch" 2>/dev/null
      $ipt -t "$t" -X "$ch" 2>/dev/null
    done
  done
done
# iptables-nft leaves empty tables behind: drop those that hold no rule
for t in "ip filter" "ip nat" "ip mangle" "ip6 filter" "ip6 nat" "ip6 mangle"; do
  nft -j list table $t 2>/dev/null | python3 -c 'import json, sys
d = json.load(sys.stdin)["nftables"]
sys.exit(0 if not any("rule" in x for x in d) else 1)' 2>/dev/null && nft delete table $t
done

# what the kubelet and containerd write outside the run directory
rm -rf "$RUN/cni/ipam" /var/lib/cni /var/lib/kubelet /var/log/pods /var/log/containers \
  /run/containerd 2>/dev/null
rm -rf "$RUN/containerd/root" "$RUN/containerd/state" "$RUN/kubelet/root" "$RUN/kubelet/pki" 2>/dev/null

# the sysctls the kubelet and the bridge plugin changed
if [ -f "$RUN/sysctl.saved" ]; then
  { read -r a; read -r b; read -r c; read -r d; } <"$RUN/sysctl.saved"
  sysctl -qw vm.overcommit_memory="$a" kernel.panic="$b" kernel.panic_on_oops="$c" \
    net.ipv4.ip_forward="$d" && rm -f "$RUN/sysctl.saved"
fi
echo "node down ($RUN)"
