import { join, resolve } from 'node:path';
import { UserError } from '../errors.js';
import { digestCacheFile } from '../images/store.js';
import type { InstanceFiles } from '../qemu/argv.js';
import { segmentSocketName } from '../net/switch.js';

// Where everything of a project lives under the state dir (DESIGN.md §8). Pure: paths only.

export interface InstanceLayout extends Omit<InstanceFiles, 'seed'> {
  dir: string;
  /** The resolved spec the instance was started with (see instance.ts). */
  applied: string;
  /** The guest's SSH host key pair, made by holos so the key can be pinned. */
  hostKey: string;
  /** Which file the root disk's base image was when the disk was made (overlay.ts). */
  diskBase: string;
  /** The seed ISO named by this hash (seed.ts: of what its content is rendered from). */
  seed: (hash: string) => string;
}

export interface ProjectLayout {
  stateDir: string;
  project: string;
  /** `instances/<project>`: one directory per instance, removed by `down`. */
  dir: string;
  /**
   * `projects/<project>.json`: the file the project is managed from and the addresses handed
   * out. It outlives `down` (the volumes and keys still belong to the project) and goes with
   * `down --volumes`, when nothing of the project is left.
   */
  record: string;
  /** `projects/<project>.lock`, beside the record: in a directory that `down` never removes. */
  lock: string;
  /** Where holos before 0.2 kept the record (`instances/<project>/project.json`), read once. */
  legacyRecord: string;
  sshDir: string;
  volumesDir: string;
  volume: (name: string) => string;
  /** The digests of base images, keyed by what changes with the file (util/digest.ts). */
  digestCache: string;
  /** `networks/<project>`: the switch of each of its networks (a pid file and a log), net/switch.ts. */
  networkDir: string;
  /**
   * A network's switch files: `switch.pid` and `switch.log` for `default` (their names before
   * named networks), `switch-<network>.pid` and `.log` for the others.
   */
  switchFiles: (network: string) => { pid: string; log: string };
  instance: (name: string) => InstanceLayout;
}

/** Linux caps a unix socket path at 108 bytes including the terminating NUL. */
const maxSocketPath = 107;

export function projectLayout(relativeOrAbsolute: string, project: string): ProjectLayout {
  // Absolute, whatever --state-dir said: qemu-img reads a relative backing file name relative
  // to the overlay's directory, and QEMU is given these paths as they are.
  const stateDir = resolve(relativeOrAbsolute);
  const dir = join(stateDir, 'instances', project);
  const volumesDir = join(stateDir, 'volumes', project);
  const instances = new Map<string, InstanceLayout>();
  return {
    stateDir,
    project,
    dir,
    record: join(stateDir, 'projects', `${project}.json`),
    lock: join(stateDir, 'projects', `${project}.lock`),
    legacyRecord: join(dir, 'project.json'),
    sshDir: join(stateDir, 'ssh', project),
    volumesDir,
    volume: (name) => join(volumesDir, `${name}.qcow2`),
    digestCache: digestCacheFile(stateDir),
    networkDir: join(stateDir, 'networks', project),
    switchFiles: (network) => {
      const stem = join(
        stateDir,
        'networks',
        project,
        network === 'default' ? 'switch' : `switch-${network}`,
      );
      return { pid: `${stem}.pid`, log: `${stem}.log` };
    },
    instance: (name) => {
      // Asked for by every kind of every instance: made once per name.
      let layout = instances.get(name);
      if (!layout) instances.set(name, (layout = instanceLayout(join(dir, name))));
      return layout;
    },
  };
}

function instanceLayout(dir: string): InstanceLayout {
  return {
    dir,
    overlay: join(dir, 'disk.qcow2'),
    serialSocket: join(dir, 'serial.sock'),
    serialLog: join(dir, 'serial.log'),
    qmpSocket: join(dir, 'qmp.sock'),
    eventSocket: join(dir, 'events.sock'),
    segmentSocket: (network) => join(dir, segmentSocketName(network)),
    pidFile: join(dir, 'qemu.pid'),
    uefiVars: join(dir, 'uefi-vars.fd'),
    applied: join(dir, 'applied.json'),
    hostKey: join(dir, 'hostkey'),
    diskBase: join(dir, 'disk.base.json'),
    seed: (hash) => join(dir, `seed-${hash.slice(0, 8)}.iso`),
  };
}

/** Fails early, naming the path, when a socket would not fit (a deep --state-dir). */
export function checkSocketPaths(layout: InstanceLayout, networks: string[]): void {
  const segments = networks.map((n) => layout.segmentSocket(n));
  for (const path of [layout.qmpSocket, layout.eventSocket, layout.serialSocket, ...segments])
    if (Buffer.byteLength(path) > maxSocketPath)
      throw new UserError(
        `${path}: ${Buffer.byteLength(path)} bytes is too long for a unix socket (max ${maxSocketPath}); use a shorter --state-dir or HOLOS_STATE_DIR`,
      );
}
