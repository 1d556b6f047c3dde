#!/usr/bin/env bash
# Start a one-node Kubernetes cluster that really runs pods, for the
# Kubernetes-mode tests and for users who want to try Kubernetes mode on this
# machine: a local OCI registry, containerd + runc + the CNI bridge (Debian's
# packages), the control plane of up.sh, kube-scheduler, a kubelet, kube-proxy
# (nftables), CoreDNS, metrics-server (behind the aggregation layer, for
# `kubectl top` and HPAs) and Traefik as the Ingress controller of the
# IngressClasses `traefik` and `nginx` (its Ingress-NGINX provider reads the
# nginx annotations). Prints the kubeconfig's path on stdout.
#
# Usage: node-up.sh [RUN_DIR]      (default: <repo>/target/k8s-node)
#        node-down.sh [RUN_DIR]    stops it and undoes every host change
#
# Needs root (bridge, network namespaces, mounts, cgroups). Network rule:
# nothing here sends traffic beyond loopback and the pod network.
# - The node's address 10.250.0.1 sits on `lo`; the API server binds and
#   advertises it and reaches the kubelet by it (InternalIP), never by a
#   host name the machine's resolver would have to look up.
# - Pods live on the bridge knode0 (10.244.0.0/24) with no masquerading; an
#   nft table drops every packet forwarded onto or off the bridge, from before
#   the bridge exists, so pod traffic can reach the host and other pods but
#   never leave the machine. The service range 10.0.0.0/24 is routed onto the
#   bridge, so a ClusterIP can never go out of another interface either.
# - CoreDNS answers cluster.local only (no forward plugin), and pods get an
#   empty host resolv.conf, so no pod query reaches the machine's resolver.
# - Images come from the local registry: containerd maps ghcr.io to it, so
#   the project's manifests keep their image names and nothing is pulled
#   from the internet.
# The kubelet and the bridge plugin change sysctls (vm.overcommit_memory,
# kernel.panic, kernel.panic_on_oops, net.ipv4.ip_forward): they are saved
# before anything starts and restored once the node is up and by node-down.sh.
#
# Ports (loopback unless said): registry 5055 (and 10.250.0.1:5055 for
# pods), etcd 23791/23801, API server
# 10.250.0.1:16453, controller-manager 16454, scheduler 16455, kubelet
# 10.250.0.1:10250 (healthz 10248), kube-proxy healthz 10256 / metrics 10249,
# CoreDNS 10.250.0.1:53, metrics-server 10.250.0.1:16456, Traefik HTTP 18080,
# HTTPS 18443 and ping 18082 (no dashboard, no API).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${1:-${K8S_NODE_RUN:-$ROOT/target/k8s-node}}"
RUN="$(mkdir -p "$RUN" && cd "$RUN" && pwd)"
CACHE="${KUBELESS_CACHE:-$HOME/.cache/kubeless-dev}"
NODE_IP=10.250.0.1
NODE_NAME=kubeless-node
BRIDGE=knode0
POD_CIDR=10.244.0.0/24
POD_GW=10.244.0.1
SERVICE_CIDR=10.0.0.0/24
REGISTRY=127.0.0.1:5055
API_PORT=16453
# registry data outlives a run: images pushed once are pushed again only when
# they change (scripts/k8s-images.sh)
REGISTRY_DATA="${K8S_NODE_REGISTRY_DATA:-$CACHE/k8s-node/registry}"

t0=$(date +%s%N)
say() { printf '\033[1m==> [%5.1fs] %s\033[0m\n' "$(( ($(date +%s%N) - t0) / 1000000 ))e-3" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
wait_for() { # wait_for SECONDS WHAT CMD...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up; see $RUN/*/*.log"
    sleep 0.2
  done
}

[ "$(id -u)" -eq 0 ] || die "the test node needs root (bridge, network namespaces, mounts)"
for c in containerd runc ctr docker-registry socat nft ip curl openssl sysctl; do
  command -v "$c" >/dev/null || die "$c is required: run scripts/deps/k8s.sh"
done
[ -x /usr/lib/cni/bridge ] || die "the CNI plugins are required: run scripts/deps/k8s.sh"

if [ -e "$RUN/kubelet/kubelet.pid" ] && kill -0 "$(cat "$RUN/kubelet/kubelet.pid")" 2>/dev/null; then
  say "node already running ($RUN)"
  echo "$RUN/control/kubeconfig"
  exit 0
fi
# a previous run that died half-way is cleaned up first
"$HERE/node-down.sh" "$RUN" >/dev/null 2>&1 || true

BIN="$("$HERE/build.sh")"
# from here on, a failure takes down whatever was started
trap 'echo "node-up failed; cleaning up" >&2; "$HERE/node-down.sh" "$RUN" >/dev/null 2>&1' ERR
mkdir -p "$RUN"/{registry,containerd/certs.d,cni/net.d,cni/ipam,kubelet,proxy,coredns,control} "$REGISTRY_DATA"

# 0. host settings the kubelet and the bridge plugin change, saved for node-down.sh
sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward >"$RUN/sysctl.saved"
restore_sysctls() {
  local a b c d
  { read -r a; read -r b; read -r c; read -r d; } <"$RUN/sysctl.saved"
  sysctl -qw vm.overcommit_memory="$a" kernel.panic="$b" kernel.panic_on_oops="$c"
}
# never forward pod traffic off the bridge (the bridge plugin turns ip_forward on)
nft -f - <<NFT
table inet kubeless_node_guard {
  chain pods_forward {
    type filter hook forward priority -10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" counter drop
    oifname "$BRIDGE" iifname != "$BRIDGE" counter drop
  }
}
NFT

# 1. the node address on lo (this kernel has no dummy links), the bridge made
# before the CNI plugin would, and the service range routed onto it
ip -4 addr show dev lo | grep -q "$NODE_IP/32" || ip addr add "$NODE_IP/32" dev lo
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
ip -4 addr show dev "$BRIDGE" | grep -q "$POD_GW/24" || ip addr add "$POD_GW/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$POD_GW"

# 2. the local registry
cat >"$RUN/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DATA
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
if ! curl -sf "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  docker-registry serve "$RUN/registry/config.yml" >"$RUN/registry/registry.log" 2>&1 &
  echo $! >"$RUN/registry/registry.pid"
  wait_for 10 registry curl -sf "http://$REGISTRY/v2/"
fi
# pods reach the same registry at the node address (a build Job pushes
# there, and the Deployment's pods pull what it pushed by that name)
socat TCP-LISTEN:5055,bind="$NODE_IP",reuseaddr,fork "TCP:$REGISTRY" \
  >"$RUN/registry/forward.log" 2>&1 &
echo $! >"$RUN/registry/forward.pid"
wait_for 10 "registry on $NODE_IP:5055" curl -sf "http://$NODE_IP:5055/v2/"
say "registry up on $REGISTRY and $NODE_IP:5055"

# 3. containerd (Debian's 1.6), images from the local registry only
for host in "$REGISTRY" "$NODE_IP:5055" ghcr.io; do
  mkdir -p "$RUN/containerd/certs.d/$host"
  cat >"$RUN/containerd/certs.d/$host/hosts.toml" <<EOF
# $host is served by the local registry; nothing is pulled from elsewhere
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
done
cat >"$RUN/containerd/config.toml" <<EOF
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$RUN/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY/pause:3.10-local"
  enable_cdi = false
  # root here may lack CAP_SYS_RESOURCE: without this every pod sandbox fails
  # with "can't get final child's PID from pipe"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$RUN/containerd/certs.d"
EOF
cat >"$RUN/cni/net.d/10-kubeless-node.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kubeless-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
containerd --config "$RUN/containerd/config.toml" >"$RUN/containerd/containerd.log" 2>&1 &
echo $! >"$RUN/containerd/containerd.pid"
wait_for 20 containerd ctr --address "$RUN/containerd/containerd.sock" version
say "containerd up"

# 4. control plane: etcd, kube-apiserver on the node address, kube-controller-manager
K8S_HARNESS_API_ADDR="$NODE_IP" K8S_HARNESS_API_PORT="$API_PORT" \
  K8S_HARNESS_ETCD_PORT=23791 K8S_HARNESS_ETCD_PEER_PORT=23801 K8S_HARNESS_KCM_PORT=16454 \
  "$HERE/up.sh" "$RUN/control" >/dev/null
export KUBECONFIG="$RUN/control/kubeconfig"
say "control plane up"

# 5. CoreDNS on the node address: cluster.local only, nothing forwarded
cat >"$RUN/coredns/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $KUBECONFIG
        pods insecure
    }
    cache 30
}
EOF
"$BIN/coredns" -conf "$RUN/coredns/Corefile" >"$RUN/coredns/coredns.log" 2>&1 &
echo $! >"$RUN/coredns/coredns.pid"

# 6. kube-scheduler
"$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG" \
  --authentication-kubeconfig="$KUBECONFIG" --authorization-kubeconfig="$KUBECONFIG" \
  --bind-address=127.0.0.1 --secure-port=16455 --leader-elect=false --v=1 \
  >"$RUN/control/scheduler.log" 2>&1 &
echo $! >"$RUN/control/scheduler.pid"

# 7. the kubelet. Pods get an empty host resolv.conf: only the cluster's DNS.
: >"$RUN/kubelet/resolv.conf"
cat >"$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
clusterDomain: cluster.local
clusterDNS:
- $NODE_IP
resolvConf: $RUN/kubelet/resolv.conf
serializeImagePulls: false
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
"$BIN/kubelet" --config="$RUN/kubelet/config.yaml" --kubeconfig="$KUBECONFIG" \
  --root-dir="$RUN/kubelet/root" --cert-dir="$RUN/kubelet/pki" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1 \
  >"$RUN/kubelet/kubelet.log" 2>&1 &
echo $! >"$RUN/kubelet/kubelet.pid"
wait_for 60 kubelet curl -sf http://127.0.0.1:10248/healthz
kubectl() { command kubectl --kubeconfig "$KUBECONFIG" "$@"; }
wait_for 60 "node $NODE_NAME" kubectl get node "$NODE_NAME"
kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=60s >/dev/null
say "node $NODE_NAME Ready"
# the kubelet writes its sysctls at start, after /healthz answers
restore_sysctls; sleep 1; restore_sysctls

# 8. kube-proxy (nftables); the conntrack zeros keep it off the conntrack sysctls
cat >"$RUN/proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: $KUBECONFIG
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
"$BIN/kube-proxy" --config="$RUN/proxy/config.yaml" --v=1 >"$RUN/proxy/proxy.log" 2>&1 &
echo $! >"$RUN/proxy/proxy.pid"
wait_for 30 kube-proxy curl -sf http://127.0.0.1:10256/healthz
say "kube-proxy up"
wait_for 30 CoreDNS grep -q CoreDNS- "$RUN/coredns/coredns.log"
say "CoreDNS up"

# 9. metrics-server on the node address, reading the kubelet by its
# InternalIP. The API server reaches it through the aggregation layer
# (up.sh's front-proxy flags): APIService v1beta1.metrics.k8s.io names a
# Service without selector whose one endpoint is this host process.
MS=$RUN/metrics-server
MS_PORT=16456
mkdir -p "$MS"
openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$MS/serving.key" -out "$MS/serving.csr" \
  -subj "/CN=metrics-server" 2>/dev/null
cat >"$MS/serving.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:metrics-server.kube-system.svc
EOF
openssl x509 -req -sha256 -days 3650 -in "$MS/serving.csr" -CA "$RUN/control/pki/ca.crt" \
  -CAkey "$RUN/control/pki/ca.key" -CAcreateserial -extfile "$MS/serving.ext" \
  -out "$MS/serving.crt" 2>/dev/null
"$BIN/metrics-server" --bind-address="$NODE_IP" --secure-port="$MS_PORT" \
  --tls-cert-file="$MS/serving.crt" --tls-private-key-file="$MS/serving.key" \
  --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
  --authorization-kubeconfig="$KUBECONFIG" \
  --kubelet-insecure-tls --kubelet-preferred-address-types=InternalIP \
  --kubelet-use-node-status-port --metric-resolution=10s --kubelet-request-timeout=5s --v=1 \
  >"$MS/metrics-server.log" 2>&1 &
echo $! >"$MS/metrics-server.pid"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {k8s-app: metrics-server}}
spec:
  ports: [{name: https, port: 443, targetPort: $MS_PORT, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: metrics-server
    endpointslice.kubernetes.io/managed-by: node-up.sh
addressType: IPv4
ports: [{name: https, port: $MS_PORT, protocol: TCP}]
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io, labels: {k8s-app: metrics-server}}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 "$RUN/control/pki/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
wait_for 60 "APIService v1beta1.metrics.k8s.io" \
  kubectl wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=2s
say "metrics-server up"

# 10. Traefik: the Ingress controller of classes traefik (its Kubernetes
# Ingress provider) and nginx (its Ingress-NGINX provider, which honours the
# nginx.ingress.kubernetes.io annotations), entry points on loopback only.
# It forwards to pod IPs on the bridge. No dashboard, no version check, no
# usage report: nothing leaves the machine.
TR=$RUN/traefik
mkdir -p "$TR"
kubectl apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
EOF
env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT KUBECONFIG="$KUBECONFIG" \
  "$BIN/traefik" --global.checknewversion=false --global.sendanonymoususage=false \
  --entrypoints.web.address=127.0.0.1:18080 \
  --entrypoints.websecure.address=127.0.0.1:18443 --entrypoints.websecure.http.tls=true \
  --entrypoints.ping.address=127.0.0.1:18082 --ping.entrypoint=ping \
  --providers.kubernetesingress.ingressendpoint.ip=127.0.0.1 \
  --providers.kubernetesingressnginx.publishstatusaddress=127.0.0.1 \
  --log.level=INFO --log.nocolor=true --accesslog=true --accesslog.filepath="$TR/access.log" \
  >"$TR/traefik.log" 2>&1 &
echo $! >"$TR/traefik.pid"
wait_for 30 Traefik curl -sf http://127.0.0.1:18082/ping
say "Traefik up on 127.0.0.1:18080 (HTTP), 127.0.0.1:18443 (HTTPS): export KUBECONFIG=$KUBECONFIG"
trap - ERR
echo "$KUBECONFIG"
