import { readFile } from 'node:fs/promises';
import { backingChain, inspect as inspectInstance } from '../state/inspect.js';
import type { FirstBoot } from '../state/records.js';
import type { InstanceSpec } from '../resources/instance.js';
import { seedFileOf } from '../resources/seed.js';
import { statusOf, type InstanceStatus } from './status.js';
import { listInstances, pickInstance, type AccessProject } from './target.js';

// `holos inspect`: one instance in full, from the state dir alone (as `ps`, whose row it
// extends): how it runs, where its first boot got to and what cloud-init made of it, its disk
// and the files it is made on, the QEMU command line and the spec it was started with.
// `--format json` is versioned like ps.

export interface InstanceDetails extends InstanceStatus {
  /** QEMU's own run state over QMP (`running`, `paused`, `shutdown`, …), while its process lives. */
  qmp_status: string | null;
  first_boot: FirstBoot | null;
  disk: { path: string; backing_chain: string[] };
  seed: string | null;
  serial_log: string;
  /** The live QEMU's command line, read from /proc. */
  qemu_argv: string[] | null;
  /** The resolved spec it was last started with (the applied record). */
  spec: InstanceSpec | null;
}

export async function inspectDetails(project: AccessProject, name: string): Promise<InstanceDetails> {
  const picked = pickInstance(project, await listInstances(project.layout), name);
  const state = await inspectInstance(picked.name, picked.layout, { qmp: true });
  const [row] = await statusOf(project.layout, [state]);
  const { layout, applied } = state;
  const argv =
    state.pid === undefined
      ? null
      : await readFile(`/proc/${state.pid}/cmdline`, 'utf8').then(
          (text) => text.split('\0').slice(0, -1),
          () => null,
        );
  return {
    ...row!,
    qmp_status: state.status ?? null,
    first_boot: applied?.first_boot ?? null,
    disk: { path: layout.overlay, backing_chain: await backingChain(layout.overlay) },
    seed: (await seedFileOf(layout)) ?? null,
    serial_log: layout.serialLog,
    qemu_argv: argv,
    spec: applied?.spec ?? null,
  };
}

/** What `holos plan` would do to the instance, against the compose file (cli/access.ts). */
export interface PendingAction {
  verb: string;
  kind: string;
  reason: string;
}

/** The human form: a line per fact; cloud-init's errors one per line beneath its verdict. */
export function formatDetails(d: InstanceDetails & { pending?: PendingAction[] | null }): string {
  const verdict = d.cloud_init
    ? [d.cloud_init.status, ...d.cloud_init.errors.map((e) => `  ${e}`)].join('\n')
    : d.first_boot?.state === 'pending'
      ? 'its first boot has not finished'
      : '-';
  const rows: [string, string][] = [
    ['instance', `${d.instance} (service ${d.service}, project ${d.project})`],
    ['state', `${d.state}${d.qmp_status && d.qmp_status !== d.state ? ` (QMP: ${d.qmp_status})` : ''}`],
    ['phase', d.phase],
    ['cloud-init', verdict],
    ['health', d.health || '-'],
    ['pid', d.pid === null ? '-' : String(d.pid)],
    ['started', d.started_at ?? '-'],
    [
      'networks',
      Object.entries(d.networks)
        .map(([network, ip]) => `${network} ${ip ?? '(DHCP)'}`)
        .join('\n') || '-',
    ],
    ['ssh', d.ssh_port === null ? '-' : `127.0.0.1:${d.ssh_port}`],
    [
      'ports',
      d.ports.map((p) => `${p.host_ip}:${p.host_port}->${p.guest_port}/${p.protocol}`).join(', ') || '-',
    ],
    ['disk', [d.disk.path, ...d.disk.backing_chain.map((b) => `  on ${b}`)].join('\n')],
    ['seed', d.seed ?? '-'],
    ['serial log', d.serial_log],
    ['qemu', d.qemu_argv?.join(' ') ?? '-'],
    [
      'against the file',
      d.pending === undefined || d.pending === null
        ? '- (no compose file here to compare with)'
        : d.pending.length === 0
          ? 'as the file says'
          : d.pending
              .map((a) => `${a.kind === 'instance' ? '' : `${a.kind} `}${a.verb}: ${a.reason}`)
              .join('\n'),
    ],
  ];
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  return rows
    .map(([key, value]) => `${key.padEnd(width)}${value.split('\n').join(`\n${' '.repeat(width)}`)}`)
    .join('\n');
}
