import { isAbsolute, relative } from 'node:path';
import { renderElsewhereUserData, type SeedKeys } from '../cloudinit/render.js';
import type { ResolvedInstance, ResolvedProject, ResolvedService } from '../compose/resolve.js';
import { shellQuote } from '../util/shell.js';

// `holos export kubevirt`: the resolved project `up` uses, as KubeVirt and CDI manifests, for a
// stack that outgrew one host. Pure: keys come in as arguments, and the same project gives the
// same documents in the same order. Every field of the compose model is mapped here or named in
// a warning (the README's "Moving to a cluster" has the table); nothing is dropped without a word.

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer';

export interface KubevirtOptions {
  namespace?: string;
  storageClass?: string;
  serviceType: ServiceType;
}

/** The keys holos made for the project on this host; absent before its first `up`. */
export interface ExportKeys {
  projectPublicKey?: string;
  hostKeys: Record<string, SeedKeys['hostKey']>;
}

export type Manifest = Record<string, unknown> & { apiVersion: string; kind: string };

export interface KubevirtExport {
  documents: Manifest[];
  /** A comment written above a document (the YAML says what it had to decide). */
  notes: Map<Manifest, string>;
  /** One line each, for stderr: what has no equivalent in a cluster, and what to do. */
  warnings: string[];
}

/** The root disk's size when the file gives none: a DataVolume needs one. */
export const defaultRootSize = 10 * 2 ** 30;

/** A Kubernetes quantity of bytes: the largest binary unit that divides it. */
export function quantity(bytes: number): string {
  for (const [unit, size] of [
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ] as const)
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

/** compose's restart policy as a KubeVirt run strategy: what happens when the guest stops. */
function runStrategy(restart: string): string {
  if (restart === 'always' || restart === 'unless-stopped') return 'Always';
  if (restart.startsWith('on-failure')) return 'RerunOnFailure';
  return 'Once';
}

/** An annotation's name: an optional DNS-subdomain prefix and `/`, then at most 63 characters. */
const annotationKey =
  /^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

export function exportKubevirt(
  project: ResolvedProject,
  keys: ExportKeys,
  options: KubevirtOptions,
): KubevirtExport {
  const warnings: string[] = [];
  const warn = (subject: string, text: string) => warnings.push(`${subject}: ${text}`);
  const namespace = options.namespace !== undefined ? { namespace: options.namespace } : {};
  const partOf = { 'app.kubernetes.io/part-of': project.name };
  const meta = (name: string, labels: Record<string, string>) => ({
    name,
    ...namespace,
    labels: { ...partOf, ...labels },
  });
  const volumeName = (volume: string) => `${project.name}-${volume}`;
  const storage = (bytes: number) => ({
    resources: { requests: { storage: quantity(bytes) } },
    ...(options.storageClass !== undefined && { storageClassName: options.storageClass }),
  });

  if (keys.projectPublicKey === undefined)
    warnings.push(
      `project ${project.name}: it has no keys on this host yet, so the guests make their own host keys and only cloud_init.ssh_authorized_keys log in; run holos up once here to export the project's key`,
    );
  for (const network of project.networks)
    if (network.name !== 'default')
      warn(
        `network ${network.name}`,
        network.driver === 'bridge'
          ? `a host bridge has no cluster equivalent; the VMs are on the pod network (a Multus network attachment is the cluster's way onto a LAN)`
          : `every VM is on the pod network, where all services reach each other; write a NetworkPolicy to keep what the networks kept apart`,
      );

  const documents: Manifest[] = [];
  const notes = new Map<Manifest, string>();
  // Named volumes: blank DataVolumes, attached with the serial the guest's mount lines look for.
  const users = new Map<string, string[]>();
  for (const instance of project.instances)
    for (const mount of serviceOf(project, instance).mounts)
      if (mount.type === 'volume')
        users.set(mount.source, [...(users.get(mount.source) ?? []), instance.name]);
  for (const [name, { size }] of Object.entries(project.volumes)) {
    const using = users.get(name) ?? [];
    if (using.length > 1)
      warn(
        `volume ${name}`,
        `${using.join(', ')} share it; ReadWriteOnce storage attaches to one node at a time, so give it a ReadWriteMany storage class or one volume per VM`,
      );
    documents.push({
      apiVersion: 'cdi.kubevirt.io/v1beta1',
      kind: 'DataVolume',
      metadata: meta(volumeName(name), { 'holos.dev/volume': name }),
      spec: { source: { blank: {} }, storage: storage(size) },
    });
  }

  for (const service of project.services) {
    const instances = project.instances.filter((i) => i.service === service.name);
    documents.push(...serviceManifests(service, instances));
  }
  return { documents, notes, warnings };

  function serviceManifests(service: ResolvedService, instances: ResolvedInstance[]): Manifest[] {
    const { spec } = service;
    const subject = `service ${service.name}`;
    const labels = { 'holos.dev/service': service.name };
    const out: Manifest[] = [];

    if (spec.dockerfile !== undefined)
      warn(subject, 'dockerfile: is not exported yet; give the service an image to export it');
    if (service.image.kind === 'local')
      warn(
        subject,
        `image ${service.image.ref} is a local file: its root DataVolumes wait for an upload (virtctl image-upload dv <instance>-root --image-path=${asWritten(project.dir, service.image.path ?? service.image.ref)})`,
      );
    if (spec.vm.disk_size === undefined)
      warn(subject, `no vm.disk_size; each root DataVolume asks for ${quantity(defaultRootSize)}`);
    if (spec.vm.extra_args.length > 0)
      warn(subject, 'vm.extra_args are QEMU arguments, which KubeVirt does not take; they are left out');
    if (spec.vm.machine !== 'q35')
      warn(subject, `vm.machine ${spec.vm.machine}: KubeVirt picks the machine type; left out`);
    if (spec.vm.cpu_model !== 'host')
      warn(
        subject,
        `vm.cpu_model ${spec.vm.cpu_model} is QEMU's name; set spec.template.spec.domain.cpu.model to the cluster's`,
      );
    for (const device of spec.devices)
      warn(
        subject,
        `device ${device.pci} becomes hostDevices entry holos.dev/pci-${device.pci.replace(/[:.]/g, '-')}; the device name is the cluster's to define (KubeVirt's permittedHostDevices)${device.rom_file !== undefined ? `, and its rom_file ${asWritten(project.dir, device.rom_file)} has no field there` : ''}`,
      );
    // compose's labels are free text: annotations, where Kubernetes allows their names.
    const annotations = Object.fromEntries(
      Object.entries(spec.labels ?? {}).filter(([key]) => {
        if (annotationKey.test(key)) return true;
        warn(subject, `label ${key} is not a Kubernetes annotation name; left out`);
        return false;
      }),
    );
    for (const mount of service.mounts)
      if (mount.type === 'bind')
        warn(
          subject,
          `bind mount ${asWritten(project.dir, mount.source)} → ${mount.target} has no cluster equivalent; put the files in a ConfigMap or a volume`,
        );
    for (const dependency of spec.depends_on) {
      const target = project.services.find((s) => s.name === dependency.service);
      if (!target) continue;
      const waits = dependency.condition !== 'service_started' && target.spec.healthcheck;
      warn(
        subject,
        waits
          ? `depends_on ${dependency.service}: Kubernetes has no start order; the first boot waits until ${dependency.service} is ready (its readiness probe)`
          : `depends_on ${dependency.service}: Kubernetes has no start order; the VMs start together`,
      );
    }
    if (spec.ports.some((p) => p.hostIp !== '127.0.0.1' && p.hostIp !== '0.0.0.0'))
      warn(
        subject,
        "a port's host address has no meaning in a cluster; the Service decides where it answers",
      );
    if (instances.length > 1 && spec.ports.length > 0)
      warn(
        subject,
        `one Service load-balances its ${instances.length} replicas; the host's port offsets are dropped`,
      );
    for (const host of spec.extra_hosts ?? [])
      if (host.ip === 'host-gateway')
        warn(subject, `extra_hosts ${host.name}: host-gateway has no cluster equivalent; left out`);
    const check = spec.healthcheck ?? undefined;
    if (check)
      warn(
        subject,
        'its healthcheck becomes a readinessProbe, which runs through the guest agent: qemu-guest-agent is added to its packages',
      );

    const waitsFor = spec.depends_on
      .map((d) => ({ d, target: project.services.find((s) => s.name === d.service) }))
      .filter(({ d, target }) => target?.spec.healthcheck && d.condition !== 'service_started')
      .map(({ d }) => `until getent hosts ${shellQuote(d.service)} >/dev/null; do sleep 2; done`);

    for (const instance of instances) {
      const instanceLabels = { ...labels, 'holos.dev/instance': instance.name };
      const secretName = `${instance.name}-cloudinit`;
      // The cluster's DNS names the peers; the hosts table keeps the file's own extra_hosts.
      const extra = Object.fromEntries(
        (spec.extra_hosts ?? []).filter((h) => h.ip !== 'host-gateway').map((h) => [h.name, h.ip]),
      );
      const clusterInstance = { ...instance, hosts: extra };
      const clusterService = { ...service, mounts: service.mounts.filter((m) => m.type === 'volume') };
      const hostKey = keys.hostKeys[instance.name];
      const userData = renderElsewhereUserData(
        clusterService,
        clusterInstance,
        {
          ...(keys.projectPublicKey !== undefined && { projectPublicKey: keys.projectPublicKey }),
          ...(hostKey && { hostKey }),
        },
        { packages: check ? ['qemu-guest-agent'] : [], runcmdBefore: waitsFor },
      );
      // In a Secret, not in the VM: the user-data holds the guest's private host key.
      out.push({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: meta(secretName, instanceLabels),
        type: 'Opaque',
        stringData: { userdata: userData },
      });

      const volumes = clusterService.mounts.map((mount, i) => ({ mount, name: `volume-${i}` }));
      const rootSize = spec.vm.disk_size ?? defaultRootSize;
      const source =
        service.image.kind === 'local' || !service.image.source
          ? { upload: {} }
          : { http: { url: service.image.source.url } };
      const domain: Record<string, unknown> = {
        cpu: { cores: spec.vm.vcpu, ...(spec.vm.cpu_model === 'host' && { model: 'host-passthrough' }) },
        memory: { guest: `${spec.vm.memory_mb}Mi` },
        ...(service.uefi && { firmware: { bootloader: { efi: { secureBoot: false } } } }),
        devices: {
          disks: [
            { name: 'root', disk: { bus: 'virtio' } },
            { name: 'cloudinit', disk: { bus: 'virtio' } },
            ...volumes.map(({ mount, name }) => ({ name, serial: mount.device, disk: { bus: 'virtio' } })),
          ],
          interfaces: [{ name: 'default', masquerade: {} }],
          ...(spec.devices.length > 0 && {
            hostDevices: spec.devices.map((device, i) => ({
              name: `device-${i}`,
              deviceName: `holos.dev/pci-${device.pci.replace(/[:.]/g, '-')}`,
            })),
          }),
        },
      };
      const vm: Manifest = {
        apiVersion: 'kubevirt.io/v1',
        kind: 'VirtualMachine',
        metadata: {
          ...meta(instance.name, instanceLabels),
          ...(Object.keys(annotations).length > 0 && { annotations }),
        },
        spec: {
          runStrategy: runStrategy(spec.restart),
          dataVolumeTemplates: [
            {
              metadata: { name: `${instance.name}-root`, labels: { ...partOf, ...instanceLabels } },
              spec: { source, storage: storage(rootSize) },
            },
          ],
          template: {
            metadata: { labels: { ...partOf, ...instanceLabels } },
            spec: {
              hostname: instance.hostname,
              // With the headless Service of its service: <instance>.<service> resolves too.
              subdomain: service.name,
              terminationGracePeriodSeconds: seconds(spec.stop_grace_period),
              domain,
              networks: [{ name: 'default', pod: {} }],
              volumes: [
                { name: 'root', dataVolume: { name: `${instance.name}-root` } },
                { name: 'cloudinit', cloudInitNoCloud: { secretRef: { name: secretName } } },
                ...volumes.map(({ mount, name }) => ({
                  name,
                  dataVolume: { name: volumeName(mount.source) },
                })),
              ],
              ...(check && {
                readinessProbe: {
                  // No initialDelaySeconds for start_period: failures before readiness cost
                  // nothing in Kubernetes either, and the first success makes it ready.
                  exec: { command: check.test },
                  periodSeconds: seconds(check.interval),
                  timeoutSeconds: seconds(check.timeout),
                  failureThreshold: check.retries,
                },
              }),
            },
          },
        },
      };
      if (service.image.kind === 'local')
        notes.set(
          vm,
          `Its root disk waits for an upload: virtctl image-upload dv ${instance.name}-root --image-path=${asWritten(project.dir, service.image.path ?? service.image.ref)}`,
        );
      out.push(vm);
      // The instance's own name, as on the host (web-0 resolves, not only web-0.web).
      out.push(headless(instance.name, instanceLabels));
    }
    // The service's name: every ready instance, as the host's table gives replica 0.
    out.push(headless(service.name, labels));
    const ports = instances[0]?.ports ?? [];
    if (ports.length > 0) {
      const published: Manifest = {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: meta(`${service.name}-ports`, labels),
        spec: {
          type: options.serviceType,
          selector: labels,
          ports: ports.map((p) => ({
            name: `${p.protocol}-${p.host === 0 ? p.guest : p.host}`,
            protocol: p.protocol.toUpperCase(),
            port: p.host === 0 ? p.guest : p.host,
            targetPort: p.guest,
          })),
        },
      };
      if (instances.length > 1)
        notes.set(
          published,
          `One Service load-balances ${instances.map((i) => i.name).join(', ')}: the host's port offsets per replica are dropped.`,
        );
      out.push(published);
    }
    return out;
  }

  function headless(name: string, selector: Record<string, string>): Manifest {
    return {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(name, selector),
      // Headless with no ports: the name resolves to the ready VMs' own addresses.
      spec: { clusterIP: 'None', selector },
    };
  }
}

/** A path under the project's directory as the file would write it (./conf), else as it is. */
function asWritten(dir: string, path: string): string {
  const inside = relative(dir, path);
  return inside === '' || inside.startsWith('..') || isAbsolute(inside) ? path : `./${inside}`;
}

const serviceOf = (project: ResolvedProject, instance: ResolvedInstance) =>
  project.services.find((s) => s.name === instance.service)!;
