#!/usr/bin/env bash
# Start a throw-away Kubernetes control plane on loopback for tests: etcd,
# kube-apiserver (RBAC, token auth, the aggregation layer's front-proxy
# certificates) and kube-controller-manager (ReplicaSets, Jobs, garbage
# collection, namespaces, HPAs re-evaluated every 5 s and scaled down after
# 30 s of lower load instead of 5 min, so that a test sees both). No
# scheduler, no kubelet: pods stay Pending. Builds the binaries first when
# they are not cached (build.sh).
#
# Usage: up.sh [RUN_DIR]   (default: <repo>/target/k8s-harness)
# Writes RUN_DIR/kubeconfig and RUN_DIR/*.pid; down.sh stops exactly those
# pids. Ports (override with env): etcd 23790/23800, apiserver 16443,
# controller-manager 16444.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${1:-${K8S_HARNESS_RUN:-$ROOT/target/k8s-harness}}"
ETCD_PORT="${K8S_HARNESS_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${K8S_HARNESS_ETCD_PEER_PORT:-23800}"
API_PORT="${K8S_HARNESS_API_PORT:-16443}"
KCM_PORT="${K8S_HARNESS_KCM_PORT:-16444}"
# The address the API server binds and advertises. The default keeps it on
# loopback; node-up.sh passes the node's address, so that pods reach the API
# through the `kubernetes` Service (whose endpoint may not be loopback).
API_ADDR="${K8S_HARNESS_API_ADDR:-127.0.0.1}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
for c in openssl curl base64; do command -v "$c" >/dev/null || die "$c is required"; done

if [ -e "$RUN/apiserver.pid" ] && kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null; then
  say "control plane already running ($RUN)"
  echo "$RUN/kubeconfig"
  exit 0
fi
"$HERE/down.sh" "$RUN" >/dev/null 2>&1 || true

BIN="$("$HERE/build.sh")"
mkdir -p "$RUN"
P="$RUN/pki"
mkdir -p "$P"
(
  cd "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
    -subj "/CN=k8s-harness-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout apiserver.key -out apiserver.csr \
    -subj "/CN=kube-apiserver" 2>/dev/null
  cat >apiserver.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:$API_ADDR,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
  # -extfile matters: without it OpenSSL writes an X.509 v1 cert that rustls rejects
  openssl x509 -req -sha256 -days 3650 -in apiserver.csr -CA ca.crt -CAkey ca.key \
    -CAcreateserial -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  # The aggregation layer: the API server proxies /apis/metrics.k8s.io to
  # metrics-server with this client certificate (CN front-proxy-client) and
  # the caller's identity in X-Remote-* headers, which metrics-server
  # trusts because the front-proxy CA signed the certificate.
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout front-proxy-ca.key \
    -out front-proxy-ca.crt -subj "/CN=k8s-harness-front-proxy-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout front-proxy-client.key \
    -out front-proxy-client.csr -subj "/CN=front-proxy-client" 2>/dev/null
  cat >front-proxy-client.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
  openssl x509 -req -sha256 -days 3650 -in front-proxy-client.csr -CA front-proxy-ca.crt \
    -CAkey front-proxy-ca.key -CAcreateserial -extfile front-proxy-client.ext \
    -out front-proxy-client.crt 2>/dev/null
)
TOKEN=$(openssl rand -hex 32)
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" >"$P/tokens.csv"
cat >"$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster:
    server: https://$API_ADDR:$API_PORT
    certificate-authority-data: $(base64 -w0 "$P/ca.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: harness
  context: {cluster: harness, user: admin, namespace: default}
current-context: harness
KC

wait_for() { # wait_for SECONDS WHAT CMD...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up; see $RUN/*.log"
    sleep 0.3
  done
}

say "starting etcd on 127.0.0.1:$ETCD_PORT"
"$BIN/etcd" --data-dir "$RUN/etcd" --listen-client-url "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-url "http://127.0.0.1:$ETCD_PEER_PORT" >"$RUN/etcd.log" 2>&1 &
echo $! >"$RUN/etcd.pid"
wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"

say "starting kube-apiserver on $API_ADDR:$API_PORT"
"$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$API_ADDR" --advertise-address="$API_ADDR" --secure-port="$API_PORT" \
  --cert-dir="$P" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --kubelet-preferred-address-types=InternalIP \
  --requestheader-client-ca-file="$P/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --requestheader-group-headers=X-Remote-Group --requestheader-username-headers=X-Remote-User \
  --proxy-client-cert-file="$P/front-proxy-client.crt" \
  --proxy-client-key-file="$P/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --allow-privileged=true --profiling=false --enable-priority-and-fairness=false --v=1 \
  >"$RUN/apiserver.log" 2>&1 &
echo $! >"$RUN/apiserver.pid"
wait_for 120 kube-apiserver curl -sf --cacert "$P/ca.crt" "https://$API_ADDR:$API_PORT/readyz"
wait_for 60 "the default namespace" curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN" \
  "https://$API_ADDR:$API_PORT/api/v1/namespaces/default"

say "starting kube-controller-manager on 127.0.0.1:$KCM_PORT"
"$BIN/kube-controller-manager" \
  --kubeconfig="$RUN/kubeconfig" \
  --authentication-kubeconfig="$RUN/kubeconfig" --authorization-kubeconfig="$RUN/kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
  --leader-elect=false \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --controllers='*' \
  --horizontal-pod-autoscaler-sync-period=5s \
  --horizontal-pod-autoscaler-downscale-stabilization=30s \
  --v=1 \
  >"$RUN/kcm.log" 2>&1 &
echo $! >"$RUN/kcm.pid"
wait_for 60 kube-controller-manager curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
say "control plane ready: export KUBECONFIG=$RUN/kubeconfig"
echo "$RUN/kubeconfig"
