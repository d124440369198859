import { bridgeNameOption } from './checks.js';
import { formatPort } from './ports.js';
import type { ResolvedProject, ResolvedService } from './resolve.js';
import { formatDuration, formatSize } from './units.js';

// `holos config`: the project as holos understands it, defaults filled in. The output is itself
// a valid holos.yaml: what resolve derived per instance sits under x- keys, which holos ignores.

function serviceConfig(service: ResolvedService, project: ResolvedProject) {
  const { spec } = service;
  const instances = project.instances.filter((i) => i.service === service.name);
  return {
    // A dockerfile's FROM names the image when the file does not.
    ...(service.image.ref !== '' && {
      image: service.image.kind === 'local' ? service.image.path : service.image.ref,
    }),
    image_format: service.image.format,
    ...(spec.dockerfile !== undefined && { dockerfile: spec.dockerfile }),
    replicas: spec.replicas,
    vm: {
      ...spec.vm,
      uefi: service.uefi,
      ...(spec.vm.disk_size !== undefined && { disk_size: formatSize(spec.vm.disk_size) }),
    },
    ports: spec.ports.map(formatPort),
    // The short form, unless a bind mount says more than it can.
    volumes: service.mounts.map((m) =>
      m.type === 'bind' && (m.automount === false || m.options)
        ? {
            type: 'bind',
            source: m.source,
            target: m.target,
            read_only: m.readOnly,
            ...(m.automount === false && { automount: false }),
            ...(m.options && { mount_options: m.options }),
          }
        : `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`,
    ),
    // As written: the list form, or the long form with each condition.
    depends_on: spec.depends_on.every((d) => d.condition === undefined)
      ? spec.depends_on.map((d) => d.service)
      : Object.fromEntries(
          spec.depends_on.map((d) => [d.service, { condition: d.condition, required: d.required }]),
        ),
    ...(spec.healthcheck && {
      healthcheck: {
        test: spec.healthcheck.test,
        interval: formatDuration(spec.healthcheck.interval),
        retries: spec.healthcheck.retries,
        start_period: formatDuration(spec.healthcheck.start_period),
        timeout: formatDuration(spec.healthcheck.timeout),
      },
    }),
    stop_grace_period: formatDuration(spec.stop_grace_period),
    restart: spec.restart,
    cloud_init: { ...spec.cloud_init, user: service.user },
    devices: spec.devices,
    networks: spec.networks,
    ...(spec.profiles.length > 0 && { profiles: spec.profiles }),
    // env_file is read in: the environment as the guest gets it, as compose's config prints it.
    ...(Object.keys(service.environment).length > 0 && { environment: service.environment }),
    ...(spec.entrypoint && { entrypoint: spec.entrypoint }),
    ...(spec.command && { command: spec.command }),
    ...(spec.working_dir !== undefined && { working_dir: spec.working_dir }),
    ...(spec.user && {
      user: spec.user.group === undefined ? spec.user.user : `${spec.user.user}:${spec.user.group}`,
    }),
    ...(spec.hostname !== undefined && { hostname: spec.hostname }),
    ...(spec.extra_hosts && { extra_hosts: spec.extra_hosts.map((h) => `${h.name}=${h.ip}`) }),
    ...(spec.labels && { labels: spec.labels }),
    'x-instances': Object.fromEntries(
      instances.map((i) => [
        i.name,
        {
          // Its first network's, as before named networks; `networks` has each.
          ip: i.nics[0]?.ip ?? null,
          mac: i.nics[0]?.mac ?? null,
          user_mac: i.userMac,
          ports: i.ports.map(formatPort),
          networks: Object.fromEntries(i.nics.map((n) => [n.network, { ip: n.ip ?? null, mac: n.mac }])),
        },
      ]),
    ),
  };
}

/**
 * Values as a file must spell them to mean themselves: every `$` doubled, since they were
 * interpolated once already (`echo $$HOME` was read as `echo $HOME`). Extension keys are not
 * interpolated, so they stay as they are.
 */
function escapeDollars<T>(value: T): T {
  if (typeof value === 'string') return value.replaceAll('$', () => '$$') as T;
  if (Array.isArray(value)) return value.map(escapeDollars) as T;
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, k.startsWith('x-') ? v : escapeDollars(v)]),
    ) as T;
  return value;
}

export function toConfig(project: ResolvedProject) {
  return escapeDollars(unescapedConfig(project));
}

function unescapedConfig(project: ResolvedProject) {
  const defaultNetwork = project.networks.find((n) => n.name === 'default');
  return {
    name: project.name,
    services: Object.fromEntries(project.services.map((s) => [s.name, serviceConfig(s, project)])),
    volumes: Object.fromEntries(
      Object.entries(project.volumes).map(([name, v]) => [name, { size: formatSize(v.size) }]),
    ),
    networks: Object.fromEntries(
      project.networks.map((n) => [
        n.name,
        n.driver === 'bridge'
          ? { driver: n.driver, driver_opts: { [bridgeNameOption]: n.bridge } }
          : { driver: n.driver, ipam: { config: [{ subnet: n.subnet }] } },
      ]),
    ),
    // The default network's (the only one before named networks), kept for readers of it.
    'x-network': {
      subnet: defaultNetwork?.subnet ?? null,
      start_order: project.levels,
      hosts: defaultNetwork?.hosts ?? {},
    },
    'x-networks': Object.fromEntries(project.networks.map((n) => [n.name, { hosts: n.hosts }])),
  };
}
