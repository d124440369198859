import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';
import { parsePort } from './ports.js';
import { parseMount } from './mounts.js';
import { isIPv4 } from 'node:net';
import { parseSubnet } from './subnets.js';

// The holos.yaml format. Types come from here (z.infer); `holos schema` prints it as JSON Schema.
// Only shapes and single values are checked here; rules that span fields (depends_on targets,
// port collisions, declared volumes) live in checks.ts so one bad field never hides them.

export const dnsLabel = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const posixUser = /^[a-z_][a-z0-9_-]{0,31}$/;
const pciAddress = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

const label = (what: string) =>
  z
    .string()
    .regex(
      dnsLabel,
      `${what} must be a DNS label: lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters`,
    );

/** A string parsed by `parse`, which returns the value or an error text. */
function parsed<T>(parse: (text: string) => T | string, expected: string) {
  return z.string({ error: `expected ${expected}` }).transform((text, ctx): T => {
    const result = parse(text);
    if (typeof result !== 'string') return result;
    ctx.addIssue({ code: 'custom', message: result });
    return z.NEVER;
  });
}

const duration = parsed(parseDuration, 'a duration such as 30s or 1m30s (in quotes is fine)');
const size = (min: number) =>
  parsed(parseSize, 'a size such as 512M or 20G').refine((bytes) => bytes >= min, {
    message: `must be at least ${min / 2 ** 20}M`,
  });

const stringList = z.array(z.string());
/** cloud-init accepts a command as a shell string or as an argv list. */
const commandList = z.array(z.union([z.string(), z.array(z.string())]));

const vm = z.strictObject({
  vcpu: z.int().min(1).max(288).default(1),
  memory_mb: z.int().min(128, 'must be at least 128 (MiB)').default(512),
  machine: z.string().min(1).default('q35'),
  cpu_model: z.string().min(1).default('host'),
  uefi: z.boolean().default(false),
  disk_size: size(2 ** 20).optional(),
  extra_args: stringList.default([]),
});

const healthcheck = z.strictObject({
  test: z
    .union([z.string().min(1), z.array(z.string()).min(1)], {
      error: 'must be a command: a string run by sh -c, or a list such as ["pg_isready", "-U", "postgres"]',
    })
    .transform((test) => (typeof test === 'string' ? ['sh', '-c', test] : test)),
  interval: duration.default(30_000),
  retries: z.int().min(1).default(3),
  start_period: duration.default(0),
  timeout: duration.default(5_000),
});

const writeFile = z.strictObject({
  path: z.string().startsWith('/', 'must be an absolute path in the guest'),
  content: z.string().default(''),
  permissions: z
    .string({ error: 'expected a string: write the mode in quotes, such as "0644"' })
    .regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as "0644"')
    .default('0644'),
  owner: z.string().min(1).default('root:root'),
  encoding: z.enum(['b64', 'base64', 'gzip', 'gz', 'gz+b64', 'gzip+base64', 'text/plain']).optional(),
  append: z.boolean().optional(),
  defer: z.boolean().optional(),
});

const cloudInit = z.strictObject({
  user: z
    .string()
    .regex(posixUser, 'must be a POSIX user name: lowercase letters, digits, "_" and "-", at most 32')
    .optional(),
  packages: stringList.default([]),
  write_files: z.array(writeFile).default([]),
  runcmd: commandList.default([]),
  bootcmd: commandList.default([]),
  ssh_authorized_keys: stringList.default([]),
});

const device = z.strictObject({
  pci: z.string().transform((text, ctx) => {
    const match = pciAddress.exec(text);
    if (match)
      return `${(match[1] ?? '0000').toLowerCase()}:${match[2]!.toLowerCase()}:${match[3]!.toLowerCase()}.${match[4]}`;
    ctx.addIssue({
      code: 'custom',
      message: `PCI address "${text}" is malformed; use 0000:01:00.0 or 01:00.0 (see holos devices)`,
    });
    return z.NEVER;
  }),
  rom_file: z.string().min(1).optional(),
});

/** A host name in /etc/hosts: DNS labels joined by dots. */
const hostName = z
  .string()
  .regex(
    /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    'an alias must be a host name: DNS labels (lowercase letters, digits and "-") joined by "."',
  );

/** How a service is on one network; `null` (`front:` with nothing after it) is the plain form. */
const serviceNetwork = z
  .strictObject({
    aliases: z.array(hostName).default([]),
    ipv4_address: z
      .string()
      .refine((ip) => isIPv4(ip), 'must be an IPv4 address such as 10.20.0.10')
      .optional(),
  })
  .nullable()
  .transform((n) => n ?? { aliases: [] });

/**
 * The networks a service is on, as compose writes them: a list of names, or a map with aliases
 * and a static address. Without the key, a service is on the project's `default` network.
 */
const serviceNetworks = z
  .union(
    [
      z
        .array(label('a network name'))
        .transform((names): Record<string, z.output<typeof serviceNetwork>> =>
          Object.fromEntries(names.map((name) => [name, { aliases: [] }])),
        ),
      z.record(label('a network name'), serviceNetwork),
    ],
    { error: 'expected a list of network names, such as [front, back], or a map of them' },
  )
  .refine((networks) => Object.keys(networks).length > 0, 'a service needs at least one network')
  .default({ default: { aliases: [] } });

/**
 * Compose service keys that mean something only for a container, each refused with why (not
 * "unknown key"): a VM has its own kernel, init and disks. Keys compose has that holos will map
 * (issue #15) say what to use meanwhile.
 */
export const refusedServiceKeys: Record<string, string> = {
  ...Object.fromEntries(
    ['cap_add', 'cap_drop'].map((k) => [k, 'is a container capability; a VM has its own kernel']),
  ),
  privileged: "lifts a container's confinement; a VM's root is root in its own kernel already",
  security_opt: "sets a container's seccomp or AppArmor profile; a VM is confined by its hypervisor",
  ...Object.fromEntries(
    ['pid', 'ipc', 'uts', 'userns_mode', 'cgroup', 'cgroup_parent', 'cgroupns_mode'].map((k) => [
      k,
      'shares a host namespace or cgroup with a container; a VM has its own kernel',
    ]),
  ),
  ...Object.fromEntries(
    [
      'shm_size',
      'ulimits',
      'sysctls',
      'oom_kill_disable',
      'oom_score_adj',
      'pids_limit',
      'mem_swappiness',
      'memswap_limit',
      'cpu_shares',
      'cpuset',
      'cpu_quota',
      'cpu_period',
      'blkio_config',
      'device_cgroup_rules',
    ].map((k) => [
      k,
      "tunes a container's cgroup; size the VM with vm: (vcpu, memory_mb) and tune the guest in cloud_init",
    ]),
  ),
  network_mode: "puts a container in another's network namespace; a VM joins networks: instead",
  links: 'links containers (legacy); VMs on a shared network reach each other by name',
  external_links: 'links containers (legacy); VMs on a shared network reach each other by name',
  container_name: "names a container; a VM's name is <service>-<replica>",
  read_only:
    "makes a container's root file system read-only; a VM's root disk is its own (mount volumes :ro)",
  tmpfs: 'mounts a tmpfs in a container; mount one in the guest with cloud_init (bootcmd)',
  volumes_from: "mounts another container's volumes; name the volumes under volumes: instead",
  init: 'runs an init in a container; a VM boots its own (systemd)',
  stdin_open: "keeps a container's stdin open; use holos console or holos exec",
  tty: 'gives a container a terminal; use holos console or holos exec -t',
  runtime: 'chooses a container runtime; holos runs QEMU',
  isolation: 'chooses a container isolation; a VM is isolated by its hypervisor',
  platform: 'chooses a container platform; holos runs x86_64 guests (vm.machine, vm.cpu_model)',
  logging: "sets a container's log driver; holos logs reads the VM's serial console",
  stop_signal: 'stops a container with a signal; a VM gets an ACPI power-off, then stop_grace_period',
  pull_policy: 'is a container image pull policy; use holos up --pull missing|always|never',
  build: 'builds a container image; a VM is provisioned from dockerfile: instead',
  expose:
    'opens a container port to linked containers; on a shared network every guest port is reachable (ports: publishes one on the host)',
};

export const serviceSchema = z.strictObject({
  image: z.string().min(1).optional(),
  image_format: z.enum(['qcow2', 'raw']).optional(),
  /** How the image sets up users and services; the catalog knows its own, a local disk is systemd. */
  image_os: z.enum(['systemd', 'openrc']).optional(),
  dockerfile: z.string().min(1).optional(),
  replicas: z.int().min(0).max(253).default(1),
  vm: vm.default(vm.parse({})),
  ports: z.array(parsed(parsePort, 'a port such as "8080:80"')).default([]),
  volumes: z.array(parsed(parseMount, 'a volume such as "./dir:/target" or "name:/target"')).default([]),
  depends_on: z.array(z.string(), { error: 'expected a list of service names, such as [db]' }).default([]),
  healthcheck: healthcheck.optional(),
  stop_grace_period: duration.default(30_000),
  cloud_init: cloudInit.default(cloudInit.parse({})),
  devices: z.array(device).default([]),
  networks: serviceNetworks,
});

const namedVolume = z.strictObject({ size: size(2 ** 20).default(10 * 2 ** 30) });

/**
 * A network: by default a private segment of the project's own (a switch only its owner can
 * reach, resources/segment.ts); `driver: bridge` puts the NIC on an existing host bridge
 * through QEMU's bridge helper, for guests on the LAN (DHCP from the LAN).
 */
const network = z.strictObject({
  driver: z
    .enum(['switch', 'bridge'], {
      error:
        'driver must be switch (a private segment, the default) or bridge (a host bridge, named by driver_opts: {holos.bridge.name: br0})',
    })
    .default('switch'),
  driver_opts: z.record(z.string(), z.string()).default({}),
  ipam: z
    .strictObject({
      config: z
        .array(z.strictObject({ subnet: parsed(parseSubnet, 'a subnet such as "10.20.0.0/24"') }))
        .max(1, 'one subnet per network: holos networks are IPv4 only'),
    })
    .optional(),
});
export const networkDefaults = network.parse({});
/** One entry of the top-level networks: `front:` with nothing after it takes the defaults. */
export const networkEntry = network.nullable().transform((n) => n ?? networkDefaults);

export const composeSchema = z.strictObject({
  /** Accepted and ignored, as compose does. */
  version: z.union([z.string(), z.number()]).optional(),
  name: label('the project name').optional(),
  services: z
    .record(label('a service name'), serviceSchema)
    .refine((services) => Object.keys(services).length > 0, 'at least one service is required'),
  volumes: z
    .record(
      label('a volume name'),
      namedVolume.nullable().transform((v) => v ?? namedVolume.parse({})),
    )
    .default({}),
  networks: z.record(label('a network name'), networkEntry).default({}),
});

export type Compose = z.infer<typeof composeSchema>;
export type Service = z.infer<typeof serviceSchema>;
export type Healthcheck = z.infer<typeof healthcheck>;
export type WriteFile = z.infer<typeof writeFile>;
export type Command = Service['cloud_init']['runcmd'][number];
export type Device = Service['devices'][number];
export type NetworkDecl = z.infer<typeof network>;
export type ServiceNetwork = Service['networks'][string];
