import { resolve } from 'node:path';
import { findCatalogImage, isLocalImage, isUrlImage } from '../images/catalog.js';
import { startLevels } from './graph.js';
import { closest, formatPath, type Issue } from './issues.js';
import { dependencyNames, mainArgv, networkDefaults, type NetworkDecl, type Service } from './schema.js';
import { formatPort } from './ports.js';
import {
  automaticSubnets,
  capacityOf,
  formatSubnet,
  holdsHost,
  overlaps,
  userModeSubnet,
  type Subnet,
} from './subnets.js';

// Rules that span fields or services. They run on every service that is valid on its own,
// so a file with a bad port in one service still gets its dependency cycle reported.

export type PathKind = 'file' | 'directory' | 'missing';

export interface CheckInput {
  /** Every service name in the file, valid or not (a reference to a broken service is not "unknown"). */
  serviceNames: readonly string[];
  /** The services that passed the schema. */
  services: ReadonlyMap<string, Service>;
  volumeNames: ReadonlySet<string>;
  /** The top-level networks that passed the schema. */
  networks: ReadonlyMap<string, NetworkDecl>;
  baseDir: string;
  /** The only host access: what a path names. */
  statPath: (path: string) => PathKind;
}

const at = (path: Issue['path'], message: string, anchor: Issue['anchor'] = 'value'): Issue => ({
  path,
  message,
  anchor,
});

function checkImage(name: string, service: Service, input: CheckInput): Issue[] {
  const path = ['services', name];
  if (service.image === undefined) {
    if (service.dockerfile !== undefined) return [];
    return [
      at(
        path,
        'needs an image: a local file (./disk.qcow2) or a catalog name (debian:12); or a dockerfile with FROM',
        'key',
      ),
    ];
  }
  if (isUrlImage(service.image)) return [];
  if (!isLocalImage(service.image)) {
    const found = findCatalogImage(service.image);
    return typeof found === 'string' ? [at([...path, 'image'], found)] : [];
  }
  const kind = input.statPath(resolve(input.baseDir, service.image));
  if (kind === 'file') return [];
  const problem = kind === 'missing' ? 'does not exist' : 'is a directory';
  return [
    at([...path, 'image'], `image file ${service.image} ${problem}; point image at a qcow2 or raw disk file`),
  ];
}

function checkDockerfile(name: string, service: Service, input: CheckInput): Issue[] {
  if (
    service.dockerfile === undefined ||
    input.statPath(resolve(input.baseDir, service.dockerfile)) === 'file'
  )
    return [];
  return [
    at(
      ['services', name, 'dockerfile'],
      `${service.dockerfile} is not a file; the path is relative to the compose file`,
    ),
  ];
}

/**
 * A host name another VM answers to: every VM's hosts table names its peers by service and by
 * instance, so a hostname equal to one of those would make two VMs answer to one name.
 */
function checkHostname(name: string, service: Service, input: CheckInput): Issue[] {
  if (service.hostname === undefined) return [];
  const mine =
    service.replicas > 1
      ? Array.from({ length: service.replicas }, (_, i) => `${service.hostname}-${i}`)
      : [service.hostname];
  const others = new Map<string, string>();
  for (const [other, spec] of input.services) {
    if (other === name) continue;
    others.set(other, `service ${other}`);
    for (let i = 0; i < spec.replicas; i++) others.set(`${other}-${i}`, `an instance of ${other}`);
  }
  const taken = mine.find((h) => others.has(h));
  return taken === undefined
    ? []
    : [
        at(
          ['services', name, 'hostname'],
          `${taken} already names ${others.get(taken)}; peers reach VMs by their service and instance names, so pick another hostname`,
        ),
      ];
}

/** working_dir and user shape the main service: without a command there is none to shape. */
function checkMainService(name: string, service: Service): Issue[] {
  if (mainArgv(service).length > 0) return [];
  return (['working_dir', 'user'] as const)
    .filter((key) => service[key] !== undefined)
    .map((key) =>
      at(
        ['services', name, key],
        `${key} applies to the VM's main service, which only a command or an entrypoint makes; give one, or remove ${key}`,
        'key',
      ),
    );
}

/** `a, b, c` of at most `most` names, then `…`: a hint never lists a whole huge file. */
const someOf = (names: readonly string[], most = 20) =>
  names.length > most ? `${names.slice(0, most).join(', ')}, …` : names.join(', ');

function checkDependencies(
  name: string,
  service: Service,
  input: CheckInput & { serviceSet: ReadonlySet<string> },
): Issue[] {
  return service.depends_on.flatMap(({ service: target, condition, required, at: where }) => {
    const path = ['services', name, 'depends_on', where];
    if (target === name) return [at(path, 'a service cannot depend on itself; remove this entry')];
    if (!input.serviceSet.has(target)) {
      // Compose lets a dependency that is not required be absent.
      if (!required) return [];
      const guess = closest(target, input.serviceNames);
      const hint = guess
        ? `did you mean "${guess}"?`
        : `services in this file: ${someOf(input.serviceNames)}`;
      return [at(path, `unknown service "${target}"; ${hint}`, typeof where === 'string' ? 'key' : 'value')];
    }
    if (
      condition === 'service_healthy' &&
      input.services.get(target) &&
      !input.services.get(target)!.healthcheck
    )
      return [
        at(
          [...path, 'condition'],
          `${target} has no healthcheck to wait for; give it one, or use condition: service_started`,
        ),
      ];
    const dependency = input.services.get(target);
    if (condition === 'service_completed_successfully' && dependency && mainArgv(dependency).length === 0)
      return [
        at(
          [...path, 'condition'],
          `${target} has no command to complete; give it a command (it runs once as the VM's main service), or use condition: service_started`,
        ),
      ];
    return [];
  });
}

function checkCycles(input: CheckInput): Issue[] {
  const graph = new Map(
    [...input.services].map(([name, s]) => [name, dependencyNames(s).filter((d) => d !== name)]),
  );
  const levels = startLevels(graph);
  if (Array.isArray(levels) || levels.cycle.length === 0) return [];
  const [first, second] = levels.cycle as [string, string];
  const entry = input.services.get(first)!.depends_on.find((d) => d.service === second)!.at;
  return [
    at(
      ['services', first, 'depends_on', entry],
      `dependency cycle ${levels.cycle.join(' → ')}; remove one of these depends_on entries`,
    ),
  ];
}

function checkMounts(
  name: string,
  service: Service,
  input: CheckInput,
  declared: readonly string[],
): Issue[] {
  const targets = new Set<string>();
  const volumes = new Set<string>();
  return service.volumes.flatMap((mount, i) => {
    const path = ['services', name, 'volumes', i];
    const issues: Issue[] = [];
    if (targets.has(mount.target))
      issues.push(at(path, `${mount.target} is already a mount target of this service`));
    targets.add(mount.target);
    if (mount.type === 'volume' && volumes.has(mount.source))
      issues.push(at(path, `volume "${mount.source}" is already mounted by this service; mount it once`));
    if (mount.type === 'volume') volumes.add(mount.source);
    if (mount.type === 'volume' && !input.volumeNames.has(mount.source)) {
      const guess = closest(mount.source, declared);
      const hint = guess ? `did you mean "${guess}"? ` : '';
      issues.push(
        at(
          path,
          `volume "${mount.source}" is not declared; ${hint}declare it under the top-level volumes: or write ./${mount.source} for a bind mount`,
        ),
      );
    }
    return issues;
  });
}

/**
 * A named volume is one disk: QEMU lets one VM write it (it locks the file), and two writers
 * would corrupt its file system anyway. So a volume several VMs attach must be read-only in
 * every one of them; caught here, before anything starts, instead of by QEMU's lock at `up`.
 */
function checkSharedVolumes(input: CheckInput): Issue[] {
  const uses = new Map<string, { path: Issue['path']; readOnly: boolean; vms: string[] }[]>();
  for (const [name, service] of input.services)
    service.volumes.forEach((mount, i) => {
      if (mount.type !== 'volume' || service.replicas === 0) return;
      const vms = Array.from({ length: service.replicas }, (_, r) => `${name}-${r}`);
      const list = uses.get(mount.source) ?? [];
      list.push({ path: ['services', name, 'volumes', i], readOnly: mount.readOnly, vms });
      uses.set(mount.source, list);
    });
  const issues: Issue[] = [];
  for (const [volume, list] of uses) {
    const vms = [...new Set(list.flatMap((u) => u.vms))];
    if (vms.length < 2) continue;
    const shown = vms.length > 4 ? `${vms.slice(0, 4).join(', ')}, …` : vms.join(', ');
    for (const use of list.filter((u) => !u.readOnly))
      issues.push(
        at(
          use.path,
          `volume "${volume}" is attached to ${vms.length} VMs (${shown}) and mounted read-write here; a disk can be written by one VM only: add :ro to every mount of it, or give each VM its own volume`,
        ),
      );
  }
  return issues;
}

interface PortClaim {
  protocol: string;
  ip: string;
  port: number;
  owner: string;
}

// 0.0.0.0 takes the port on every address, so it clashes with any address.
const clashes = (a: PortClaim, b: PortClaim) =>
  a.protocol === b.protocol &&
  a.port === b.port &&
  (a.ip === b.ip || a.ip === '0.0.0.0' || b.ip === '0.0.0.0');

/** Host ports of every replica, checked against each other across the whole project. */
function checkPorts(input: CheckInput): Issue[] {
  const issues: Issue[] = [];
  // By protocol and port: a claim is compared with the few on the same port, not with all.
  const claims = new Map<string, PortClaim[]>();
  for (const [name, service] of input.services) {
    service.ports.forEach((port, i) => {
      const path = ['services', name, 'ports', i];
      if (port.host === 0) return;
      const last = port.host + service.replicas - 1;
      if (last > 65535) {
        issues.push(
          at(
            path,
            `with ${service.replicas} replicas, host port ${port.host} would run to ${last}, past 65535; pick a lower port`,
          ),
        );
        return;
      }
      for (let replica = 0; replica < service.replicas; replica++) {
        const claim = {
          protocol: port.protocol,
          ip: port.hostIp,
          port: port.host + replica,
          owner: formatPath(path),
        };
        if (service.replicas > 1) claim.owner += ` (replica ${replica})`;
        const samePort = claims.get(`${claim.protocol}:${claim.port}`) ?? [];
        const other = samePort.find((c) => clashes(c, claim));
        if (other) {
          issues.push(
            at(
              path,
              `host port ${formatPort({ ...port, host: claim.port })} is also claimed by ${other.owner}; each host port can be published once`,
            ),
          );
          return;
        }
        samePort.push(claim);
        claims.set(`${claim.protocol}:${claim.port}`, samePort);
      }
    });
  }
  return issues;
}

/** A PCI device can be handed to one VM only. */
function checkDevices(input: CheckInput): Issue[] {
  const owners = new Map<string, string>();
  const issues: Issue[] = [];
  for (const [name, service] of input.services) {
    service.devices.forEach((device, i) => {
      const path = ['services', name, 'devices', i, 'pci'];
      if (service.replicas > 1)
        issues.push(
          at(path, `PCI passthrough gives the device to one VM; set replicas: 1 (now ${service.replicas})`),
        );
      const owner = owners.get(device.pci);
      if (owner) issues.push(at(path, `device ${device.pci} is already passed to ${owner}`));
      owners.set(device.pci, formatPath(path));
      if (device.rom_file !== undefined) {
        const kind = input.statPath(resolve(input.baseDir, device.rom_file));
        if (kind !== 'file')
          issues.push(
            at(
              ['services', name, 'devices', i, 'rom_file'],
              `${device.rom_file} ${kind === 'missing' ? 'does not exist' : 'is a directory'}; the path is relative to the compose file`,
            ),
          );
      }
    });
  }
  return issues;
}

/** The option that names a bridge network's host bridge (as the original's 0.6 names it). */
export const bridgeNameOption = 'holos.bridge.name';

/** A network's own rules: what its driver takes, and its subnet against the others'. */
function checkNetworkDecls(input: CheckInput): Issue[] {
  const issues: Issue[] = [];
  const subnets: [string, Subnet][] = [];
  for (const [name, net] of input.networks) {
    const path = ['networks', name];
    const allowed = net.driver === 'bridge' ? [bridgeNameOption] : [];
    for (const option of Object.keys(net.driver_opts))
      if (!allowed.includes(option))
        issues.push(
          at(
            [...path, 'driver_opts', option],
            net.driver === 'bridge'
              ? `a bridge network takes one option, ${bridgeNameOption} (the host bridge to join)`
              : 'a switch network takes no driver_opts',
            'key',
          ),
        );
    const subnet = net.ipam?.config[0]?.subnet;
    if (net.driver === 'bridge') {
      if (!net.driver_opts[bridgeNameOption])
        issues.push(
          at(
            [...path, 'driver'],
            `a bridge network joins an existing host bridge: name it with driver_opts: {${bridgeNameOption}: br0}, or leave driver out for a private network`,
          ),
        );
      if (net.ipam)
        issues.push(
          at(
            [...path, 'ipam'],
            'a bridge network gets its addresses from the LAN (DHCP): leave ipam out',
            'key',
          ),
        );
      continue;
    }
    if (!subnet) continue;
    const where = [...path, 'ipam', 'config', 0, 'subnet'];
    if (overlaps(subnet, userModeSubnet))
      issues.push(
        at(
          where,
          `${formatSubnet(subnet)} overlaps ${formatSubnet(userModeSubnet)}, the user-mode network every VM's first NIC is on; pick another subnet`,
        ),
      );
    const other = subnets.find(([, s]) => overlaps(s, subnet));
    if (other)
      issues.push(
        at(
          where,
          `${formatSubnet(subnet)} overlaps the subnet of network ${other[0]} (${formatSubnet(other[1])})`,
        ),
      );
    subnets.push([name, subnet]);
  }
  return issues;
}

/** What services say of their networks: declared ones, static addresses inside them, aliases, room. */
function checkServiceNetworks(input: CheckInput & { serviceSet: ReadonlySet<string> }): Issue[] {
  const issues: Issue[] = [];
  // `default` is there without being declared, as in compose.
  const networks = new Map([['default', networkDefaults], ...input.networks]);
  const declared = [...networks.keys()];
  const members = new Map<string, number>();
  const staticOwners = new Map<string, string>();
  const aliasOwners = new Map<string, string>();
  for (const [name, service] of input.services) {
    for (const [net, how] of Object.entries(service.networks)) {
      const path = ['services', name, 'networks', net];
      const decl = networks.get(net);
      if (!decl) {
        const hint = closest(net, declared);
        issues.push(
          at(
            path,
            `network "${net}" is not declared under the top-level networks:${hint ? `; did you mean ${hint}?` : ''}`,
            'key',
          ),
        );
        continue;
      }
      members.set(net, (members.get(net) ?? 0) + service.replicas);
      if (decl.driver === 'bridge' && (how.ipv4_address || how.aliases.length > 0)) {
        issues.push(
          at(
            path,
            `network ${net} is a host bridge: the LAN's DHCP gives the address, so it takes no ipv4_address or aliases`,
            'key',
          ),
        );
        continue;
      }
      for (const [i, alias] of how.aliases.entries()) {
        const where = [...path, 'aliases', i];
        if (input.serviceSet.has(alias) || input.serviceSet.has(alias.replace(/-\d+$/, '')))
          issues.push(at(where, `alias ${alias} is the name of a service or replica; pick another`));
        const owner = aliasOwners.get(`${net}/${alias}`);
        if (owner && owner !== name)
          issues.push(at(where, `alias ${alias} is also service ${owner}'s on network ${net}`));
        aliasOwners.set(`${net}/${alias}`, name);
      }
      const ip = how.ipv4_address;
      if (ip === undefined) continue;
      const where = [...path, 'ipv4_address'];
      const subnet = decl.ipam?.config[0]?.subnet;
      if (!subnet) {
        issues.push(
          at(
            where,
            `network ${net} names no subnet, so its addresses are handed out: declare one (ipam: {config: [{subnet: 10.20.0.0/24}]}) to give static ones`,
          ),
        );
        continue;
      }
      if (!holdsHost(subnet, ip))
        issues.push(at(where, `${ip} is not an address for a VM in ${net}'s subnet ${formatSubnet(subnet)}`));
      if (service.replicas > 1)
        issues.push(
          at(
            where,
            `a static address is one VM's: set replicas: 1 (now ${service.replicas}), or leave ipv4_address out`,
          ),
        );
      const owner = staticOwners.get(`${net}/${ip}`);
      if (owner) issues.push(at(where, `${ip} is also ${owner}'s address on network ${net}`));
      staticOwners.set(`${net}/${ip}`, `service ${name}`);
    }
  }
  for (const [net, count] of members) {
    const subnet = networks.get(net)!.ipam?.config[0]?.subnet;
    const capacity = subnet
      ? capacityOf(subnet)
      : capacityOf({ base: automaticSubnets.first, prefix: automaticSubnets.prefix });
    if (count > capacity)
      issues.push(
        at(
          input.networks.has(net) ? ['networks', net] : ['services'],
          `network ${net} would hold ${count} instances; its subnet ${subnet ? formatSubnet(subnet) : '(a /24)'} holds at most ${capacity}`,
          'key',
        ),
      );
  }
  return issues;
}

export function crossChecks(given: CheckInput): Issue[] {
  const input = { ...given, serviceSet: new Set(given.serviceNames) };
  const declared = [...input.volumeNames];
  const perService = [...input.services].flatMap(([name, service]) => [
    ...checkImage(name, service, input),
    ...checkDockerfile(name, service, input),
    ...checkDependencies(name, service, input),
    ...checkMounts(name, service, input, declared),
    ...checkHostname(name, service, input),
    ...checkMainService(name, service),
  ]);
  return [
    ...perService,
    ...checkCycles(input),
    ...checkSharedVolumes(input),
    ...checkPorts(input),
    ...checkDevices(input),
    ...checkNetworkDecls(input),
    ...checkServiceNetworks(input),
  ];
}
