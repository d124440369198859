import * as keypair from '../resources/keypair.js';
import type { ProjectLayout } from '../state/layout.js';
import type { InstanceObserved } from '../resources/instance.js';
import {
  byServiceAndIndex,
  inspectProject,
  phaseOf,
  readBoot,
  stateOf,
  type InstanceState,
  type Phase,
} from '../state/inspect.js';
import type { CloudInitVerdict } from '../observe/boot.js';
import { sshTargetOf } from '../state/records.js';

// What `ps` shows: every instance on disk, observed now. Read from the state dir alone, so it
// works without the compose file. `--format json` is a versioned contract.

export interface PortStatus {
  host_ip: string;
  host_port: number;
  guest_port: number;
  protocol: 'tcp' | 'udp';
}

export interface InstanceStatus {
  project: string;
  service: string;
  instance: string;
  /** running, paused, stopped, exited (QEMU gone without holos stopping it), shutdown, … */
  state: string;
  /**
   * Where a running guest is on its way: booting, provisioning (its first boot, cloud-init at
   * work), ready, degraded (cloud-init finished with errors), failed (cloud-init could not set
   * it up); otherwise the state (stopped, exited, paused, …), or created (never started).
   */
  phase: Phase;
  /** cloud-init's verdict on the root disk's first boot, once it is over. */
  cloud_init: CloudInitVerdict | null;
  /** healthy, unhealthy, or empty without a healthcheck or when not running. */
  health: string;
  pid: number | null;
  /** Its address on its first switch network (the only one before named networks). */
  ip: string | null;
  /** Its address on each of its networks (null on a host bridge: the LAN's DHCP gives it). */
  networks: Record<string, string | null>;
  ssh_port: number | null;
  ports: PortStatus[];
  started_at: string | null;
}

export async function projectStatus(layout: ProjectLayout): Promise<InstanceStatus[]> {
  return statusOf(layout, await inspectProject(layout, { qmp: true }));
}

/**
 * The rows of the instances as observe saw them (instance.ts: inspected with QMP): what a
 * no-op `up` prints, without asking every QEMU again what the plan just asked it.
 */
export function observedStatus(
  layout: ProjectLayout,
  observed: Record<string, InstanceObserved>,
): Promise<InstanceStatus[]> {
  const states = Object.entries(observed).map(([name, seen]) => stateOf(name, layout.instance(name), seen));
  return statusOf(layout, states.sort(byServiceAndIndex));
}

/** The rows of instances already inspected (with QMP), in the order given; a healthcheck is probed now. */
export async function statusOf(layout: ProjectLayout, states: InstanceState[]): Promise<InstanceStatus[]> {
  let key: ReturnType<typeof keypair.read> | undefined;
  return Promise.all(
    states.map(async (inspected): Promise<InstanceStatus> => {
      const { applied, state } = inspected;
      // The boot as the serial log tells it now (a plan's observation reads it only for a repair).
      const boot = applied && (await readBoot(inspected.layout, applied, state === 'running'));
      const seen = { ...inspected, ...(boot && { boot }) };
      const running = seen.pid !== undefined && state === 'running';
      const ports = Object.values(applied?.spec.ports ?? {}).map((p, i) => ({
        host_ip: p.hostIp,
        host_port: applied!.hostPorts[i] ?? p.host,
        guest_port: p.guest,
        protocol: p.protocol,
      }));
      let health = '';
      const check = applied?.spec.healthcheck;
      const projectKey =
        running && check ? await (key ??= keypair.read(keypair.projectKeySpec(layout))) : undefined;
      if (running && check && projectKey) {
        // ssh2 loads only when a probe runs: ps and up without healthchecks never need it.
        const { probe } = await import('../ssh/health.js');
        health = (
          await probe(sshTargetOf(applied, projectKey.privateKey), check).catch(() => ({ healthy: false }))
        ).healthy
          ? 'healthy'
          : 'unhealthy';
      }
      return {
        project: layout.project,
        service: seen.service,
        instance: seen.name,
        state,
        phase: phaseOf(seen),
        cloud_init: seen.boot?.verdict ?? null,
        health,
        pid: seen.pid ?? null,
        ip: Object.values(applied?.spec.networks ?? {}).find((n) => n.ip)?.ip ?? null,
        networks: Object.fromEntries(
          Object.entries(applied?.spec.networks ?? {}).map(([name, n]) => [name, n.ip ?? null]),
        ),
        ssh_port: seen.pid !== undefined ? (applied?.sshPort ?? null) : null,
        ports,
        started_at: seen.pid !== undefined ? (applied?.startedAt ?? null) : null,
      };
    }),
  );
}
