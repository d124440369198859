import { z } from 'zod';
import { parseDuration, parseSize } from './units.js';
import { parsePort, type PortMapping } from './ports.js';
import { parseMount, targetProblem, type Mount } from './mounts.js';
import { isIP, isIPv4 } from 'node:net';
import { parseSubnet } from './subnets.js';
import { unknownKeyMessage } from './issues.js';
import { splitWords } from './words.js';
import { environmentProblem } from '../cloudinit/environment.js';

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

/**
 * A healthcheck's command as compose writes it: a string (run by `sh -c`), `["CMD", argv…]`,
 * `["CMD-SHELL", "command"]`, or `["NONE"]` (no healthcheck); and holos's own argv list
 * (`["pg_isready", "-U", "postgres"]`). Always an argv, or null for none.
 */
function healthTest(test: string | string[]): string[] | null {
  if (typeof test === 'string') return ['sh', '-c', test];
  const [first, ...rest] = test;
  if (first === 'NONE') return null;
  if (first === 'CMD') return rest;
  if (first === 'CMD-SHELL') return ['sh', '-c', rest.join(' ')];
  return test;
}

const healthcheckFields = z
  .strictObject({
    test: z
      .union([z.string().min(1), z.array(z.string()).min(1)], {
        error:
          'must be a command: a string run by sh -c, or a list such as ["CMD", "pg_isready", "-U", "postgres"]',
      })
      .optional(),
    interval: duration.default(30_000),
    retries: z.int().min(1).default(3),
    start_period: duration.default(0),
    /** How often to probe during start_period (compose's), instead of `interval`. */
    start_interval: duration.optional(),
    timeout: duration.default(5_000),
    /** Compose's way to turn off a healthcheck (an image's, there; here, one merged in). */
    disable: z.boolean().default(false),
  })
  .superRefine((h, ctx) => {
    if (!h.disable && h.test === undefined)
      ctx.addIssue({ code: 'custom', path: ['test'], message: 'needs a command, or disable: true for none' });
    if (Array.isArray(h.test) && ['CMD', 'CMD-SHELL'].includes(h.test[0]!) && h.test.length < 2)
      ctx.addIssue({ code: 'custom', path: ['test'], message: `${h.test[0]} needs the command after it` });
  });

/** A healthcheck, or null when it says there is none (`disable: true`, `["NONE"]`). */
const healthcheck = healthcheckFields.transform(({ test, disable, start_interval, ...rest }) => {
  const argv = disable || test === undefined ? null : healthTest(test);
  return argv === null
    ? null
    : { test: argv, ...rest, ...(start_interval !== undefined && { start_interval }) };
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

const portNumber = (min: number) =>
  z
    .int({ error: 'must be a port number' })
    .min(min, `must be at least ${min}`)
    .max(65535, 'must be at most 65535');
/** Compose's long form of a port; `mode` and the names are a container orchestrator's, accepted. */
const longPort = z
  .strictObject({
    target: portNumber(1),
    published: z
      .union([
        portNumber(0),
        z.string().regex(/^\d{1,5}$/, 'must be a port number (ranges: one entry per port)'),
      ])
      .optional(),
    host_ip: z
      .string()
      .refine((ip) => isIPv4(ip), 'must be an IPv4 address such as 127.0.0.1')
      .optional(),
    protocol: z.enum(['tcp', 'udp']).default('tcp'),
    mode: z.enum(['host', 'ingress']).optional(),
    name: z.string().optional(),
    app_protocol: z.string().optional(),
  })
  .transform((p): PortMapping => ({
    hostIp: p.host_ip ?? '127.0.0.1',
    host: Number(p.published ?? 0),
    guest: p.target,
    protocol: p.protocol,
  }));
/** Compose's long form of a mount, with qemu-compose's `automount` and `mount_options` for bind mounts. */
const longMount = z
  .strictObject({
    type: z.enum(['bind', 'volume']),
    source: z.string().min(1, 'needs a source: a host directory (bind) or a volume name'),
    target: z.string(),
    read_only: z.boolean().default(false),
    automount: z.boolean().optional(),
    mount_options: z
      .string()
      .regex(
        /^[A-Za-z0-9_.=+-]+(,[A-Za-z0-9_.=+-]+)*$/,
        'must be 9p mount options such as cache=loose,msize=104857600',
      )
      .optional(),
    bind: z.strictObject({ create_host_path: z.boolean().optional() }).optional(),
    volume: z.strictObject({ nocopy: z.boolean().optional() }).optional(),
  })
  .superRefine((m, ctx) => {
    const problem = targetProblem(m.target);
    if (problem) ctx.addIssue({ code: 'custom', path: ['target'], message: problem });
    if (m.type === 'volume')
      for (const key of ['automount', 'mount_options'] as const)
        if (m[key] !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message: `${key} is a bind mount's (9p); a volume is a disk, mounted as ext4`,
          });
  })
  .transform((m): Mount =>
    m.type === 'bind'
      ? {
          type: 'bind',
          source: m.source,
          target: m.target,
          readOnly: m.read_only,
          ...(m.automount === false && { automount: false as const }),
          ...(m.mount_options && { options: m.mount_options }),
        }
      : { type: 'volume', source: m.source, target: m.target, readOnly: m.read_only },
  );

const withoutDialect = ({ $schema: _, ...rest }: Record<string, unknown>) => rest;

/**
 * A list entry that compose writes short (a string, parsed by `parseShort`) or long (a mapping,
 * checked by `long`). Not a zod union, which would say only "not valid here": each form gives
 * its own message; the JSON schema names both, for editors.
 */
function shortOrLong<T>(
  parseShort: (text: string) => T | string,
  long: z.ZodPipe<z.ZodObject, z.ZodTransform<T>>,
  expected: string,
  shortTypes: ('string' | 'integer')[],
) {
  return z
    .unknown()
    .transform((value, ctx): T => {
      if (typeof value === 'string' || (typeof value === 'number' && shortTypes.includes('integer'))) {
        const parsedValue = parseShort(String(value));
        if (typeof parsedValue !== 'string') return parsedValue;
        ctx.addIssue({ code: 'custom', message: parsedValue });
        return z.NEVER;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        ctx.addIssue({ code: 'custom', message: `expected ${expected}` });
        return z.NEVER;
      }
      const result = long.safeParse(value);
      if (result.success) return result.data;
      const known = Object.keys(long.in.shape);
      for (const issue of result.error.issues)
        if (issue.code === 'unrecognized_keys')
          for (const key of issue.keys)
            ctx.addIssue({ code: 'custom', path: [key], message: unknownKeyMessage(key, known) });
        else ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
      return z.NEVER;
    })
    .meta({
      anyOf: [...shortTypes.map((type) => ({ type })), withoutDialect(z.toJSONSchema(long, { io: 'input' }))],
    });
}

/** A port: `"8080:80"` (or `80`), or the long form (`{target: 80, published: 8080}`). */
const port = shortOrLong(parsePort, longPort, 'a port such as "8080:80", or {target: 80, published: 8080}', [
  'string',
  'integer',
]);

/** A mount: `"./dir:/target:ro"`, or the long form (`{type: bind, source: ./dir, target: /target}`). */
const mount = shortOrLong(
  parseMount,
  longMount,
  'a volume such as "./dir:/target" or "name:/target", or {type: bind, source: ./dir, target: /target}',
  ['string'],
);

/**
 * One dependency. `condition` is the long form's; without it (the list form) holos waits for
 * the dependency's healthcheck when it has one, else for its start. `at` is where it is
 * written (a list index, or the map's key), for messages.
 */
export interface Dependency {
  service: string;
  condition?: 'service_started' | 'service_healthy' | 'service_completed_successfully';
  required: boolean;
  at: number | string;
}

/** `depends_on` as compose writes it: a list of names, or a map of names to a condition. */
const dependencies = z
  .union(
    [
      z
        .array(z.string())
        .transform((names) => names.map((service, at): Dependency => ({ service, required: true, at }))),
      z
        .record(
          z.string(),
          z.strictObject({
            condition: z
              .enum(['service_started', 'service_healthy', 'service_completed_successfully'])
              .default('service_started'),
            required: z.boolean().default(true),
            restart: z.boolean().optional(),
          }),
        )
        .transform((map) =>
          Object.entries(map).map(([service, d]): Dependency => ({
            service,
            condition: d.condition,
            required: d.required,
            at: service,
          })),
        ),
    ],
    {
      error:
        'expected a list of service names, such as [db], or a map such as {db: {condition: service_healthy}}',
    },
  )
  .default([]);

/** The names a service depends on. */
export const dependencyNames = (service: { depends_on: readonly Dependency[] }) =>
  service.depends_on.map((d) => d.service);

/** A host name in /etc/hosts: DNS labels joined by dots. */
const hostNamePattern =
  /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const hostNameRule = 'a host name: DNS labels (lowercase letters, digits and "-") joined by "."';
const hostName = z.string().regex(hostNamePattern, `an alias must be ${hostNameRule}`);

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

/** compose's `cpus` (a number, or one in a string): a VM has whole vCPUs. */
const cpus = z
  .union([z.number(), z.string().regex(/^\d+(\.\d+)?$/, 'must be a number of CPUs, such as 2')], {
    error: 'expected a number of CPUs, such as 2',
  })
  .transform((value, ctx) => {
    const count = Number(value);
    if (Number.isInteger(count) && count >= 1 && count <= 288) return count;
    ctx.addIssue({
      code: 'custom',
      message: `${value} CPUs: a VM has a whole number of vCPUs, 1 to 288 (compose's fractions are a container's CPU quota)`,
    });
    return z.NEVER;
  });
/** compose's memory limit (`512m`, `1g`, or bytes): a VM's memory, in whole MiB. */
const memory = z
  .union([z.int().min(0), z.string()], { error: 'expected a size such as 512m or 1g' })
  .transform((value, ctx) => {
    const bytes = typeof value === 'number' ? value : parseSize(value);
    if (typeof bytes === 'string') ctx.addIssue({ code: 'custom', message: bytes });
    else if (bytes % 2 ** 20 !== 0 || bytes < 128 * 2 ** 20)
      ctx.addIssue({
        code: 'custom',
        message: `${value}: a VM's memory is a whole number of MiB, at least 128M`,
      });
    else return bytes / 2 ** 20;
    return z.NEVER;
  });
const replicaCount = z.int().min(0).max(253);

/**
 * compose's `deploy`, as far as it means something on one host: replicas and resource limits
 * (synonyms of replicas, vm.vcpu and vm.memory_mb; compose/synonyms.ts), and the swarm form of
 * restart. The rest is refused with why (refused.ts).
 */
const deploy = z.strictObject({
  replicas: replicaCount.optional(),
  resources: z
    .strictObject({ limits: z.strictObject({ cpus: cpus.optional(), memory: memory.optional() }).optional() })
    .optional(),
  restart_policy: z
    .strictObject({
      condition: z.enum(['none', 'on-failure', 'any']).default('any'),
      max_attempts: z.int().min(1).optional(),
    })
    .optional(),
});
/** One entry of a list-or-mapping key: its name, its value (null: none given) and where it is written. */
export interface KeyValue {
  key: string;
  value: string | null;
  at: number | string;
}

/**
 * Compose's keys written as a list of `KEY=VALUE` strings or as a mapping (`environment`,
 * `labels`, `extra_hosts`). A list entry is split at its first `=` (or first `separator` when it
 * has no `=`); mapping values may be numbers or booleans, which become strings. `check` refuses
 * an entry with a message, at the entry.
 */
function keyValues(expected: string, check: (entry: KeyValue) => string | undefined, separator = '=') {
  return z
    .unknown()
    .transform((value, ctx): KeyValue[] => {
      const entries: KeyValue[] = [];
      const refuse = (at: number | string, message: string) =>
        ctx.addIssue({ code: 'custom', path: [at], message });
      if (Array.isArray(value))
        value.forEach((entry, at) => {
          if (typeof entry !== 'string') return refuse(at, `expected a string such as ${expected}`);
          const split = entry.includes('=') ? entry.indexOf('=') : entry.indexOf(separator);
          entries.push(
            split < 0
              ? { key: entry, value: null, at }
              : { key: entry.slice(0, split), value: entry.slice(split + 1), at },
          );
        });
      else if (value !== null && typeof value === 'object')
        for (const [key, v] of Object.entries(value)) {
          if (v !== null && !['string', 'number', 'boolean'].includes(typeof v))
            refuse(key, 'expected a string, a number, a boolean or nothing');
          else entries.push({ key, value: v === null ? null : String(v as string), at: key });
        }
      else ctx.addIssue({ code: 'custom', message: `expected a list such as [${expected}], or a mapping` });
      for (const entry of entries) {
        const problem = check(entry);
        if (problem) refuse(entry.at, problem);
      }
      return entries;
    })
    .meta({
      anyOf: [
        { type: 'array', items: { type: 'string' } },
        {
          type: 'object',
          additionalProperties: { type: ['string', 'number', 'boolean', 'null'] },
        },
      ],
    });
}

/**
 * `environment`: `["A=1", "B"]` or `{A: 1, B: null}`. A name without a value takes its value
 * from the environment holos runs in (load.ts), and is left out when that has none.
 */
const environment = keyValues('"DEBUG=1"', ({ key, value }) =>
  environmentProblem(key, value ?? ''),
).transform((entries) => Object.fromEntries(entries.map((e) => [e.key, e.value])));

/** One `env_file`: a path (relative to the compose file), required unless it says otherwise. */
const envFileEntry = shortOrLong(
  (path) => (path === '' ? 'must be a file name' : { path, required: true }),
  z.strictObject({ path: z.string().min(1), required: z.boolean().default(true) }).transform((e) => e),
  'a file name such as ./app.env, or {path: ./app.env, required: false}',
  ['string'],
);
/** `env_file`: one file, or a list of them (later files win). */
const envFiles = z
  .union([z.string(), z.array(z.unknown())], {
    error: 'expected a file name such as ./app.env, or a list of them',
  })
  .transform((value) => (typeof value === 'string' ? [value] : value))
  .pipe(z.array(envFileEntry));

/**
 * `command` and `entrypoint`: a list is the argv; a string is split into words as compose
 * splits it (words.ts), never run by a shell. null, as in compose, is the same as leaving it out.
 */
const argvWords = z
  .union([z.string(), z.array(z.string())], {
    error: 'expected a list such as ["npm", "start"], or a string such as "npm start"',
  })
  .transform((value, ctx): string[] => {
    if (Array.isArray(value)) return value;
    const words = splitWords(value);
    if (typeof words !== 'string') return words;
    ctx.addIssue({ code: 'custom', message: words });
    return z.NEVER;
  })
  .nullable()
  .optional();

const idOrName = /^(?:[a-z_][a-z0-9_-]{0,31}|\d{1,10})$/;
/** `user`: `name`, `uid`, `name:group` or `uid:gid`, as compose writes it. */
const runAs = z
  .union([z.string(), z.int().min(0)], { error: 'expected a user such as "app", "1000" or "1000:1000"' })
  .transform((value, ctx) => {
    const [user = '', group, ...more] = String(value).split(':');
    if (idOrName.test(user) && (group === undefined || idOrName.test(group)) && more.length === 0)
      return { user, ...(group !== undefined && { group }) };
    ctx.addIssue({
      code: 'custom',
      message: 'must be a user name or uid, optionally :group or :gid, such as "app" or "1000:1000"',
    });
    return z.NEVER;
  });

/** The address of the host as a guest reaches it over QEMU's user-mode network. */
/** The main service's argv as compose builds it: the entrypoint's words, then the command's; empty for none. */
export const mainArgv = (service: Pick<Service, 'entrypoint' | 'command'>): string[] => [
  ...(service.entrypoint ?? []),
  ...(service.command ?? []),
];

export const hostGateway = '10.0.2.2';

/** `extra_hosts`: `["name:ip"]`, `["name=ip"]` or `{name: ip}`; `host-gateway` is the host. */
const extraHosts = keyValues(
  '"db.example:10.0.0.5"',
  ({ key, value }) => {
    if (!hostNamePattern.test(key)) return `${JSON.stringify(key)} must be ${hostNameRule}`;
    if (value === null) return 'needs an address: write name:address, such as db.example:10.0.0.5';
    const address = value.replace(/^\[(.*)\]$/, '$1');
    if (address === 'host-gateway' || isIPv4(address)) return undefined;
    return isIP(address) === 6
      ? 'holos guests have IPv4 networks only; give an IPv4 address'
      : `${JSON.stringify(value)} must be an IPv4 address or host-gateway`;
  },
  ':',
).transform((entries) => entries.map((e) => ({ name: e.key, ip: e.value! })));

/** `labels`: metadata only; nothing in the guest or on the host reads them. */
const labels = keyValues('"com.example.team=web"', ({ key }) =>
  key === '' ? 'a label needs a name' : undefined,
).transform((entries) => Object.fromEntries(entries.map((e) => [e.key, e.value ?? ''])));

/** An absolute path in the guest, on one line (it is written into a unit file). */
const guestDirectory = z
  .string()
  .startsWith('/', 'must be an absolute path in the guest')
  .refine((path) => !/[\p{Cc}]/u.test(path), 'must not hold control characters');

export const serviceSchema = z.strictObject({
  image: z.string().min(1).optional(),
  image_format: z.enum(['qcow2', 'raw']).optional(),
  /** How the image sets up users and services; the catalog knows its own, a local disk is systemd. */
  image_os: z.enum(['systemd', 'openrc']).optional(),
  dockerfile: z.string().min(1).optional(),
  replicas: replicaCount.default(1),
  /** compose's synonyms (compose/synonyms.ts puts them in replicas and vm); two that disagree are an error. */
  scale: replicaCount.optional(),
  cpus: cpus.optional(),
  mem_limit: memory.optional(),
  deploy: deploy.optional(),
  vm: vm.default(vm.parse({})),
  ports: z.array(port).default([]),
  volumes: z.array(mount).default([]),
  depends_on: dependencies,
  healthcheck: healthcheck.optional(),
  stop_grace_period: duration.default(30_000),
  cloud_init: cloudInit.default(cloudInit.parse({})),
  devices: z.array(device).default([]),
  networks: serviceNetworks,
  /** What watch does when a VM stops by itself (reconcile/restart.ts); compose's default, no. */
  restart: z
    .string({
      error: 'expected no, always, on-failure, on-failure:N or unless-stopped (write "no" in quotes)',
    })
    .regex(
      /^(no|always|unless-stopped|on-failure(:[1-9][0-9]{0,3})?)$/,
      'must be no, always, on-failure, on-failure:N (at most N restarts) or unless-stopped',
    )
    .default('no'),
  /** Compose's profiles: the service is part of the project only when one is enabled (compose/profiles.ts). */
  profiles: z
    .array(
      z
        .string()
        .regex(
          /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/,
          'a profile name is letters, digits, "_", "." and "-", starting with a letter or digit',
        ),
    )
    .default([]),
  environment: environment.optional(),
  env_file: envFiles.optional(),
  /** The VM's main service (cloudinit/main-service.ts): entrypoint ++ command, as in compose. */
  command: argvWords,
  entrypoint: argvWords,
  working_dir: guestDirectory.optional(),
  user: runAs.optional(),
  hostname: label('hostname').optional(),
  extra_hosts: extraHosts.optional(),
  labels: labels.optional(),
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
export type Healthcheck = NonNullable<z.infer<typeof healthcheck>>;
export type WriteFile = z.infer<typeof writeFile>;
export type Command = Service['cloud_init']['runcmd'][number];
export type Device = Service['devices'][number];
export type NetworkDecl = z.infer<typeof network>;
export type ServiceNetwork = Service['networks'][string];
