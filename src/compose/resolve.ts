import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import { findCatalogImage, isLocalImage, isUrlImage } from '../images/catalog.js';
import { sourceOf, type ImageSource } from '../images/source.js';
import { bridgeNameOption } from './checks.js';
import { startLevels } from './graph.js';
import type { LoadedCompose } from './load.js';
import type { PortMapping } from './ports.js';
import type { Mount } from './mounts.js';
import { dependencyNames, hostGateway, mainArgv, networkDefaults, type Service } from './schema.js';
import { serviceEnvironment, type HostEnvironment } from './environment.js';
import type { MainServiceSpec } from '../cloudinit/main-service.js';
import {
  automaticSubnets,
  formatSubnet,
  hostRange,
  ipText,
  overlaps,
  parseSubnet,
  userModeSubnet,
  type Subnet,
} from './subnets.js';

// Resolve is pure: from a valid compose file (and what was allocated before) to every derived
// value an instance needs. Nothing here reads the host.

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
  /** The guest's environment: env_file files, then `environment` (compose/environment.ts). */
  environment: Record<string, string>;
  /** The VM's main service, when the service has a command or an entrypoint. */
  main?: MainServiceSpec;
}

/**
 * `device` is the 9p mount tag of a bind mount, or the virtio-blk serial of a named volume
 * (the guest sees /dev/disk/by-id/virtio-<serial>).
 */
export type ResolvedMount = Mount & { device: string };

/** One NIC of an instance, on one of its networks (NIC 2 onwards; NIC 1 is user-mode). */
export interface Nic {
  network: string;
  mac: string;
  /** On a switch network: its static address and the subnet's prefix. A bridge's comes from DHCP. */
  ip?: string;
  prefix?: number;
}

export interface ResolvedInstance {
  name: string;
  service: string;
  index: number;
  /** Its networks' NICs, in the order the service lists the networks. */
  nics: Nic[];
  /** NIC 1, user-mode networking with the host port forwards. */
  userMac: string;
  /** Host ports for this replica (replica i of H:G binds H+i; 0 stays ephemeral). */
  ports: PortMapping[];
  /**
   * Its /etc/hosts: the names on the networks it shares with others (as in compose, a name
   * resolves only where two services meet), each with its address on the first network of
   * this instance's that holds it. Instances on the same networks share one object.
   */
  hosts: Record<string, string>;
  /** The guest's host name: `hostname` (with `-<index>` for replicas > 1), else its name. */
  hostname: string;
}

/** What was handed out before, so that an edit never moves another instance's address. */
export interface Allocation {
  networks: Record<string, NetworkAllocation>;
}

export interface NetworkAllocation {
  /** Empty for a bridge network (no address of ours). */
  subnet: string;
  instances: Record<string, { ip?: string; mac: string }>;
}

/** Allocations of holos before named networks: the one network's addresses. */
type LegacyAllocation = { instances: Record<string, { ip: string; mac: string }> };

/** An allocation as a project record may hold it: today's, or one written before named networks. */
export type RecordedAllocation = Allocation | LegacyAllocation;

export interface ResolvedNetwork {
  name: string;
  driver: 'switch' | 'bridge';
  /** A switch network's subnet: declared, or handed out from 10.10.0.0/16 and kept. */
  subnet?: string;
  /** A bridge network's host bridge. */
  bridge?: string;
  /** Every name on this network with its address: instances, services (replica 0), aliases. */
  hosts: Record<string, string>;
}

export interface ResolvedProject {
  name: string;
  /** The file the project is defined by; `files` are all that were merged, it first. */
  file: string;
  files: string[];
  dir: string;
  /** Services in start order; `levels` groups them for parallel starts. */
  services: ResolvedService[];
  levels: string[][];
  instances: ResolvedInstance[];
  volumes: Record<string, { size: number }>;
  /** The networks some instance is on, `default` first, then as declared. */
  networks: ResolvedNetwork[];
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

/**
 * The main service as compose says it: the entrypoint's words, then the command's (Docker's
 * rule); none without either.
 */
function mainService(spec: Service, environment: Record<string, string>): MainServiceSpec | undefined {
  const argv = mainArgv(spec);
  if (argv.length === 0) return undefined;
  return {
    argv,
    environment,
    ...(spec.working_dir !== undefined && { workingDir: spec.working_dir }),
    ...(spec.user !== undefined && { user: spec.user.user }),
    ...(spec.user?.group !== undefined && { group: spec.user.group }),
  };
}

function resolveService(name: string, spec: Service, dir: string, host: HostEnvironment): ResolvedService {
  const environment = serviceEnvironment(spec, dir, host);
  const main = mainService(spec, environment);
  return {
    name,
    // A ROM file is the compose file's, wherever QEMU runs.
    spec: spec.devices.some((d) => d.rom_file !== undefined)
      ? {
          ...spec,
          devices: spec.devices.map((d) =>
            d.rom_file === undefined ? d : { ...d, rom_file: resolvePath(dir, d.rom_file) },
          ),
        }
      : spec,
    image: resolveImage(spec, dir),
    user: loginUser(spec),
    uefi: spec.vm.uefi || spec.devices.length > 0,
    mounts: spec.volumes.map((m, i) =>
      m.type === 'bind'
        ? { ...m, source: resolvePath(dir, m.source), device: `holos${i}` }
        : { ...m, device: volumeSerial(m.source) },
    ),
    environment,
    ...(main && { main }),
  };
}

/** virtio-blk serials hold 20 characters; a long volume name keeps a prefix and gains a hash. */
export function volumeSerial(name: string): string {
  const serial = `vol-${name}`;
  return serial.length <= 20 ? serial : `vol-${name.slice(0, 7)}-${sha256(name).toString('hex').slice(0, 8)}`;
}

/** A locally administered MAC from the instance's identity; `attempt` moves it off a collision. */
function macFor(project: string, instance: string, attempt: number): string {
  const h = sha256(`${project}/${instance}${attempt > 0 ? `#${attempt}` : ''}`);
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** The user-mode NIC's MAC: the private one with its third byte set to 01. */
export const userMacOf = (mac: string) => mac.replace(/^52:54:00/, '52:54:01');

interface Member {
  name: string;
  service: ResolvedService;
  index: number;
}

/** The networks some member is on, in order: `default` first, then as the file declares them. */
function usedNetworks(loaded: LoadedCompose, members: Member[]): string[] {
  const used = new Set(members.flatMap((m) => Object.keys(m.service.spec.networks)));
  return ['default', ...Object.keys(loaded.compose.networks)].filter(
    (name, i, all) => used.has(name) && all.indexOf(name) === i,
  );
}

/**
 * A subnet for each switch network: the declared one, else the one it had, else the lowest
 * free 10.10.N.0/24 (so a file without networks keeps 10.10.0.0/24, as before named networks).
 */
function allocateSubnets(
  loaded: LoadedCompose,
  names: string[],
  previous: Allocation | undefined,
): Map<string, Subnet | undefined> {
  const declOf = (name: string) => loaded.compose.networks[name] ?? networkDefaults;
  const subnets = new Map<string, Subnet | undefined>();
  const taken: Subnet[] = [userModeSubnet];
  for (const name of names) {
    const declared = declOf(name).ipam?.config[0]?.subnet;
    if (declared) taken.push(declared);
    if (declOf(name).driver === 'bridge' || declared) subnets.set(name, declared);
  }
  const free = (s: Subnet) => !taken.some((t) => overlaps(t, s));
  // Those it had first, so that a network new to the file never takes one of theirs.
  for (const name of names.filter((n) => !subnets.has(n))) {
    const kept = parseSubnet(previous?.networks[name]?.subnet ?? '');
    if (typeof kept === 'object' && free(kept)) {
      taken.push(kept);
      subnets.set(name, kept);
    }
  }
  for (const name of names.filter((n) => !subnets.has(n))) {
    let subnet: Subnet | undefined;
    for (let i = 0; !subnet && i < automaticSubnets.count; i++) {
      const candidate = { base: automaticSubnets.first + i * 256, prefix: automaticSubnets.prefix };
      if (free(candidate)) subnet = candidate;
    }
    if (!subnet) throw new Error(`resolve: no free subnet in 10.10.0.0/16 for network ${name}`);
    taken.push(subnet);
    subnets.set(name, subnet);
  }
  return subnets;
}

/** A locally administered MAC for a NIC; the default network's keeps the name holos gave it before. */
const nicIdentity = (instance: string, network: string) =>
  network === 'default' ? instance : `${instance}@${network}`;

/**
 * Keeps what was allocated before; a static address (`ipv4_address`) is its service's even if
 * another instance had it (that one moves); new instances get the lowest free address, in
 * start order. MACs are unique across the project, so no guest sees one twice.
 */
function allocate(
  project: string,
  members: Member[],
  subnets: Map<string, Subnet | undefined>,
  previous: Allocation | undefined,
): Allocation {
  const usedMacs = new Set(
    Object.values(previous?.networks ?? {}).flatMap((n) => Object.values(n.instances).map((a) => a.mac)),
  );
  const networks: Allocation['networks'] = {};
  for (const [network, subnet] of subnets) {
    const on = members.filter((m) => network in m.service.spec.networks);
    const before = previous?.networks[network];
    const sameSubnet = subnet !== undefined && before?.subnet === formatSubnet(subnet);
    const statics = new Map(
      on.flatMap((m) => {
        const ip = m.service.spec.networks[network]?.ipv4_address;
        return ip ? [[m.name, ip] as const] : [];
      }),
    );
    const staticIps = new Set(statics.values());
    const usedIps = new Set(staticIps);
    const instances: NetworkAllocation['instances'] = {};
    for (const m of on) {
      const kept = before?.instances[m.name];
      if (!kept) continue;
      const ip =
        statics.get(m.name) ??
        (sameSubnet && kept.ip && !staticIps.has(kept.ip) && !usedIps.has(kept.ip) ? kept.ip : undefined);
      if (subnet && !ip) continue; // its address moves: a new one below, with the same MAC
      instances[m.name] = { ...(ip && { ip }), mac: kept.mac };
      if (ip) usedIps.add(ip);
    }
    const range = subnet && hostRange(subnet);
    let next = range ? range.first : 0;
    for (const m of on) {
      const had = before?.instances[m.name]?.mac;
      if (instances[m.name]) continue;
      let ip = statics.get(m.name);
      if (range && !ip) {
        while (usedIps.has(ipText(next))) next++;
        if (next > range.last)
          throw new Error(`resolve: network ${network} ran out of addresses, past validation`);
        ip = ipText(next);
      }
      let mac = had;
      for (let attempt = 0; !mac || (mac !== had && usedMacs.has(mac)); attempt++)
        mac = macFor(project, nicIdentity(m.name, network), attempt);
      instances[m.name] = { ...(ip && { ip }), mac };
      usedMacs.add(mac);
      if (ip) usedIps.add(ip);
    }
    networks[network] = { subnet: subnet ? formatSubnet(subnet) : '', instances };
  }
  return { networks };
}

/** An allocation as the project record keeps it, in today's form. */
function upgradeAllocation(previous: RecordedAllocation | undefined): Allocation | undefined {
  if (!previous || 'networks' in previous) return previous;
  return { networks: { default: { subnet: '10.10.0.0/24', instances: previous.instances } } };
}

function replicaPorts(ports: readonly PortMapping[], index: number): PortMapping[] {
  return ports.map((p) => ({ ...p, host: p.host === 0 ? 0 : p.host + index }));
}

/** `hostname`, told apart per replica when there are several; else the instance's name. */
const hostnameOf = (m: Member) => {
  const { hostname, replicas } = m.service.spec;
  if (hostname === undefined) return m.name;
  return replicas > 1 ? `${hostname}-${m.index}` : hostname;
};

export function resolveProject(loaded: LoadedCompose, recorded?: RecordedAllocation): ResolvedProject {
  const { compose, project, dir, host } = loaded;
  const graph = new Map(Object.entries(compose.services).map(([name, s]) => [name, dependencyNames(s)]));
  const levels = startLevels(graph);
  if (!Array.isArray(levels))
    throw new Error(`resolve: dependency cycle ${levels.cycle.join(' → ')} passed validation`);
  const services = levels.flat().map((name) => resolveService(name, compose.services[name]!, dir, host));
  const members = services.flatMap((service) =>
    Array.from({ length: service.spec.replicas }, (_, index) => ({
      service,
      index,
      name: `${service.name}-${index}`,
    })),
  );
  const previous = upgradeAllocation(recorded);
  const networkNames = usedNetworks(loaded, members);
  const subnets = allocateSubnets(loaded, networkNames, previous);
  const allocation = allocate(project, members, subnets, previous);

  const nicsOf = (m: Member): Nic[] =>
    Object.keys(m.service.spec.networks).map((network) => {
      const { ip, mac } = allocation.networks[network]!.instances[m.name]!;
      const subnet = subnets.get(network);
      return { network, mac, ...(ip && subnet && { ip, prefix: subnet.prefix }) };
    });
  const networks = networkNames.map((name): ResolvedNetwork => {
    const decl = compose.networks[name] ?? networkDefaults;
    const subnet = subnets.get(name);
    const hosts: Record<string, string> = {};
    for (const m of members) {
      const ip = allocation.networks[name]!.instances[m.name]?.ip;
      if (!ip) continue;
      hosts[m.name] = ip;
      if (m.index === 0)
        for (const alias of [m.service.name, ...(m.service.spec.networks[name]?.aliases ?? [])])
          hosts[alias] ??= ip;
    }
    return {
      name,
      driver: decl.driver,
      ...(subnet && { subnet: formatSubnet(subnet) }),
      ...(decl.driver === 'bridge' && { bridge: decl.driver_opts[bridgeNameOption] }),
      hosts,
    };
  });
  const hostsByNetworks = new Map<string, Record<string, string>>();
  const hostsOf = (names: string[]) => {
    const key = names.join(' ');
    let hosts = hostsByNetworks.get(key);
    if (!hosts) {
      // The first of the instance's networks that has a name gives its address.
      hosts = {};
      for (const name of names)
        for (const [host, ip] of Object.entries(networks.find((n) => n.name === name)!.hosts))
          hosts[host] ??= ip;
      hostsByNetworks.set(key, hosts);
    }
    return hosts;
  };
  /** extra_hosts: the service's own lines after the table's (a service without keeps the shared one). */
  const withExtraHosts = (hosts: Record<string, string>, service: ResolvedService) => {
    const extra = service.spec.extra_hosts ?? [];
    if (extra.length === 0) return hosts;
    const table = { ...hosts };
    for (const { name, ip } of extra) table[name] = ip === 'host-gateway' ? hostGateway : ip;
    return table;
  };
  const instances = members.map((m): ResolvedInstance => {
    const nics = nicsOf(m);
    const defaultMac = nics.find((n) => n.network === 'default')?.mac;
    return {
      name: m.name,
      service: m.service.name,
      index: m.index,
      nics,
      // NIC 1's MAC follows the default network's, as it did before named networks.
      userMac: userMacOf(defaultMac ?? macFor(project, m.name, 0)),
      ports: replicaPorts(m.service.spec.ports, m.index),
      hosts: withExtraHosts(hostsOf(Object.keys(m.service.spec.networks)), m.service),
      hostname: hostnameOf(m),
    };
  });
  const volumes = Object.fromEntries(
    Object.entries(compose.volumes).map(([name, v]) => [name, { size: v.size }]),
  );
  return {
    name: project,
    file: loaded.file,
    files: loaded.files,
    dir,
    services,
    levels,
    instances,
    volumes,
    networks,
    allocation,
  };
}
