import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { findCatalogImage, isLocalImage, isUrlImage } from '../images/catalog.js';
import { sourceOf, type ImageSource } from '../images/source.js';
import { maxInstances } from './checks.js';
import { startLevels } from './graph.js';
import type { LoadedCompose } from './load.js';
import type { PortMapping } from './ports.js';
import type { Mount } from './mounts.js';
import type { Service } from './schema.js';

// Resolve is pure: from a valid compose file (and what was allocated before) to every derived
// value an instance needs. Nothing here reads the host.

export const subnet = { prefix: '10.10.0', cidr: '10.10.0.0/24', first: 2, last: 254 } as const;

export interface ImageRef {
  /** As written in the file. */
  ref: string;
  kind: 'local' | 'catalog' | 'url';
  /** Absolute path of a local image. */
  path?: string;
  /** Where a catalog or URL image is downloaded from. */
  source?: ImageSource;
  format: 'qcow2' | 'raw';
  /** How the image's cloud-init sets up users and services (`image_os`, else the catalog's). */
  os: 'systemd' | 'openrc';
}

export interface ResolvedService {
  name: string;
  spec: Service;
  image: ImageRef;
  /** The login user: cloud_init.user, else the image's usual cloud user. */
  user: string;
  uefi: boolean;
  /** Mounts with bind sources made absolute, each with the name the guest sees it by. */
  mounts: ResolvedMount[];
}

/**
 * `device` is the 9p mount tag of a bind mount, or the virtio-blk serial of a named volume
 * (the guest sees /dev/disk/by-id/virtio-<serial>).
 */
export type ResolvedMount = Mount & { device: string };

export interface ResolvedInstance {
  name: string;
  service: string;
  index: number;
  ip: string;
  /** NIC 2, on the private segment. */
  mac: string;
  /** NIC 1, user-mode networking with the host port forwards. */
  userMac: string;
  /** Host ports for this replica (replica i of H:G binds H+i; 0 stays ephemeral). */
  ports: PortMapping[];
}

/** What was handed out before, so that an edit never moves another instance's address. */
export interface Allocation {
  instances: Record<string, { ip: string; mac: string }>;
}

export interface Network {
  cidr: string;
  /** Every instance name and service name (replica 0) with its IP, for /etc/hosts. */
  hosts: Record<string, string>;
}

export interface ResolvedProject {
  name: string;
  file: string;
  dir: string;
  /** Services in start order; `levels` groups them for parallel starts. */
  services: ResolvedService[];
  levels: string[][];
  instances: ResolvedInstance[];
  volumes: Record<string, { size: number }>;
  network: Network;
  allocation: Allocation;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();

function resolveImage(service: Service, dir: string): ImageRef {
  const ref = service.image ?? '';
  if (isLocalImage(ref)) {
    const path = resolvePath(dir, ref.replace(/^~(?=\/)/, process.env.HOME ?? '~'));
    return {
      ref,
      kind: 'local',
      path,
      format: service.image_format ?? (ref.endsWith('.raw') ? 'raw' : 'qcow2'),
      os: service.image_os ?? 'systemd',
    };
  }
  // A dockerfile without image: its FROM names the image; until then, there is none to pull.
  if (ref === '') return { ref, kind: 'catalog', format: service.image_format ?? 'qcow2', os: 'systemd' };
  const source = sourceOf(ref, service.image_format);
  if (typeof source === 'string') throw new Error(`resolve: image ${ref} passed validation: ${source}`);
  const found = isUrlImage(ref) ? undefined : findCatalogImage(ref);
  const entry = typeof found === 'object' ? found.image : undefined;
  return {
    ref,
    kind: entry ? 'catalog' : 'url',
    format: source.format,
    source,
    os: service.image_os ?? entry?.os ?? 'systemd',
  };
}

function loginUser(service: Service): string {
  if (service.cloud_init.user) return service.cloud_init.user;
  const found = service.image && !isLocalImage(service.image) ? findCatalogImage(service.image) : undefined;
  return typeof found === 'object' ? found.image.user : 'ubuntu';
}

function resolveService(name: string, spec: Service, dir: string): ResolvedService {
  return {
    name,
    spec,
    image: resolveImage(spec, dir),
    user: loginUser(spec),
    uefi: spec.vm.uefi || spec.devices.length > 0,
    mounts: spec.volumes.map((m, i) =>
      m.type === 'bind'
        ? { ...m, source: resolvePath(dir, m.source), device: `holos${i}` }
        : { ...m, device: volumeSerial(m.source) },
    ),
  };
}

/** virtio-blk serials hold 20 characters; a long volume name keeps a prefix and gains a hash. */
export function volumeSerial(name: string): string {
  const serial = `vol-${name}`;
  return serial.length <= 20 ? serial : `vol-${name.slice(0, 7)}-${sha256(name).toString('hex').slice(0, 8)}`;
}

/** The private segment's subnet (the segment itself is the project's switch, net/switch.ts). */
export function networkOf(): Omit<Network, 'hosts'> {
  return { cidr: subnet.cidr };
}

/** A locally administered MAC from the instance's identity; `attempt` moves it off a collision. */
function macFor(project: string, instance: string, attempt: number): string {
  const h = sha256(`${project}/${instance}${attempt > 0 ? `#${attempt}` : ''}`);
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The user-mode NIC's MAC: the private one with its third byte set to 01. */
export const userMacOf = (mac: string) => mac.replace(/^52:54:00/, '52:54:01');

/** Keeps what was allocated before; new instances get the lowest free IP, in start order. */
function allocate(project: string, names: string[], previous: Allocation | undefined): Allocation {
  const kept = Object.entries(previous?.instances ?? {}).filter(([name]) => names.includes(name));
  const usedIps = new Set(kept.map(([, a]) => a.ip));
  const usedMacs = new Set(kept.map(([, a]) => a.mac));
  const instances: Allocation['instances'] = Object.fromEntries(kept);
  let next: number = subnet.first;
  for (const name of names) {
    if (instances[name]) continue;
    while (usedIps.has(`${subnet.prefix}.${next}`)) next++;
    let attempt = 0;
    while (usedMacs.has(macFor(project, name, attempt))) attempt++;
    instances[name] = { ip: `${subnet.prefix}.${next}`, mac: macFor(project, name, attempt) };
    usedIps.add(instances[name].ip);
    usedMacs.add(instances[name].mac);
  }
  return { instances };
}

function replicaPorts(ports: readonly PortMapping[], index: number): PortMapping[] {
  return ports.map((p) => ({ ...p, host: p.host === 0 ? 0 : p.host + index }));
}

export function resolveProject(loaded: LoadedCompose, previous?: Allocation): ResolvedProject {
  const { compose, project, dir } = loaded;
  const graph = new Map(Object.entries(compose.services).map(([name, s]) => [name, s.depends_on]));
  const levels = startLevels(graph);
  if (!Array.isArray(levels))
    throw new Error(`resolve: dependency cycle ${levels.cycle.join(' → ')} passed validation`);
  const services = levels.flat().map((name) => resolveService(name, compose.services[name]!, dir));
  const replicas = services.flatMap((s) =>
    Array.from({ length: s.spec.replicas }, (_, index) => ({
      service: s,
      index,
      name: `${s.name}-${index}`,
    })),
  );
  if (replicas.length > maxInstances)
    throw new Error(`resolve: ${replicas.length} instances passed validation`);
  const allocation = allocate(
    project,
    replicas.map((r) => r.name),
    previous,
  );
  const instances = replicas.map(({ service, index, name }): ResolvedInstance => {
    const { ip, mac } = allocation.instances[name]!;
    return {
      name,
      service: service.name,
      index,
      ip,
      mac,
      userMac: userMacOf(mac),
      ports: replicaPorts(service.spec.ports, index),
    };
  });
  const hosts: Record<string, string> = {};
  for (const instance of instances) {
    hosts[instance.name] = instance.ip;
    if (instance.index === 0) hosts[instance.service] = instance.ip;
  }
  const volumes = Object.fromEntries(
    Object.entries(compose.volumes).map(([name, v]) => [name, { size: v.size }]),
  );
  return {
    name: project,
    file: loaded.file,
    dir,
    services,
    levels,
    instances,
    volumes,
    network: { ...networkOf(), hosts },
    allocation,
  };
}
