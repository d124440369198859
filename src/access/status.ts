import * as keypair from '../resources/keypair.js';
import type { ProjectLayout } from '../state/layout.js';
import { inspectProject } from '../state/inspect.js';
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
  /** healthy, unhealthy, or empty without a healthcheck or when not running. */
  health: string;
  pid: number | null;
  ip: string | null;
  ssh_port: number | null;
  ports: PortStatus[];
  started_at: string | null;
}

export async function projectStatus(layout: ProjectLayout): Promise<InstanceStatus[]> {
  const key = await keypair.read(keypair.projectKeySpec(layout));
  const states = await inspectProject(layout, { qmp: true });
  return Promise.all(
    states.map(async (seen): Promise<InstanceStatus> => {
      const { applied, state } = seen;
      const running = seen.pid !== undefined && state === 'running';
      const ports = Object.values(applied?.spec.ports ?? {}).map((p, i) => ({
        host_ip: p.hostIp,
        host_port: applied!.hostPorts[i] ?? p.host,
        guest_port: p.guest,
        protocol: p.protocol,
      }));
      let health = '';
      const check = applied?.spec.healthcheck;
      if (running && check && key) {
        // ssh2 loads only when a probe runs: ps and up without healthchecks never need it.
        const { probe } = await import('../ssh/health.js');
        health = (await probe(sshTargetOf(applied, key.privateKey), check).catch(() => ({ healthy: false })))
          .healthy
          ? 'healthy'
          : 'unhealthy';
      }
      return {
        project: layout.project,
        service: seen.service,
        instance: seen.name,
        state,
        health,
        pid: seen.pid ?? null,
        ip: applied?.spec.network.ip ?? null,
        ssh_port: seen.pid !== undefined ? (applied?.sshPort ?? null) : null,
        ports,
        started_at: seen.pid !== undefined ? (applied?.startedAt ?? null) : null,
      };
    }),
  );
}
