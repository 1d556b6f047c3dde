#!/usr/bin/env bash
# Build kubeless, start `kubeless server`, deploy the sample function and
# tell the user how to call it. Ctrl-C stops the server.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/scripts/setup.sh" --release
BIN="$ROOT/target/release"
export PATH="$BIN:$PATH"

kubeless server &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM

home="${KUBELESS_HOME:-$HOME/.kubeless}"
for _ in $(seq 1 100); do
  kubeless version >/dev/null 2>&1 && [ -f "$home/config.json" ] && kubeless function ls >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || die "kubeless server did not start (see the messages above)"
  sleep 0.1
done

if ! kubeless function describe hello >/dev/null 2>&1; then
  kubeless function deploy hello --runtime python3.11 --handler hello.hello \
    --from-file "$ROOT/examples/hello.py" --wait
fi
cat <<MSG

kubeless is running. Try:

  export PATH="$BIN:\$PATH"
  kubeless function call hello
  kubeless function call hello --data '{"name": "you"}'
  curl $(sed -n 's/.*"gateway": "\(.*\)".*/\1/p' "$home/config.json")/default/hello
  kubeless function ls
  kubeless function logs hello

Ctrl-C stops the server; your functions come back on the next start.
MSG
wait $SERVER
