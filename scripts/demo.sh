#!/usr/bin/env bash
# The main job on a bundled example: builds the test image (cached), then runs
# examples/demo with holos — up, ps, a request to the forwarded port, a command in a VM over
# SSH, down — inside a private network namespace, so the VMs' multicast segment never touches
# this host's interfaces. Needs root (the namespace, and the image build's loop devices).
set -euo pipefail
cd "$(dirname "$0")/.."
image=$(scripts/build-test-image.sh | tail -n 1)
ln -sfn "$image" examples/demo/disk.qcow2

ns="holos-demo-$$"
# A state dir of its own unless given one; removed at the end with the demo's volume and keys.
own_state=
if [[ -z "${HOLOS_STATE_DIR:-}" ]]; then
  own_state=$(mktemp -d /tmp/holos-demo-state.XXXXXX)
  export HOLOS_STATE_DIR="$own_state"
fi
holos() { ip netns exec "$ns" node "$PWD/dist/cli.js" -f examples/demo/holos.yaml "$@"; }
cleanup() {
  holos down >/dev/null 2>&1 || true
  ip netns delete "$ns" 2>/dev/null || true
  if [[ -n "$own_state" ]]; then rm -rf "$own_state"; fi
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip route add 224.0.0.0/4 dev lo

set -x
holos up
holos ps
holos exec web -w 5m -- sh -c 'cloud-init status --wait >/dev/null; getent hosts db; cat /srv/index.html'
# The server starts as cloud-init finishes; QEMU's port forward accepts (and drops) connections
# before it listens, so the request is retried for a minute. The interval keeps node alive
# while undici waits on a dropped connection.
ip netns exec "$ns" node -e '
  const url = "http://127.0.0.1:8080/index.html";
  const alive = setInterval(() => {}, 1_000);
  (async () => {
    let last = "no answer";
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        last = `${response.status} ${JSON.stringify(await response.text())}`;
        if (response.ok) return console.log(`GET ${url}: ${last}`);
      } catch (error) {
        last = error.cause?.message ?? error.message;
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    throw new Error(`GET ${url}: ${last}`);
  })().then(() => clearInterval(alive), (error) => { console.error(error.message); process.exit(1); });'
holos down
