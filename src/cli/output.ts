import { stripVTControlCharacters, styleText } from 'node:util';
import type { Plan } from '../reconcile/plan.js';
import type { HolosEvent } from '../events.js';
import { stamp } from '../events.js';
import type { Action } from '../resources/kind.js';
import type { InstanceStatus } from '../access/status.js';
import { formatBytes, formatDuration } from '../compose/units.js';
import { downloadLine, progressPrinter } from './progress.js';

// Human output: plans, progress lines and tables. --json output goes through `stamp`.

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

/** Columns padded to their widest cell, compose style: no borders. */
export function table(rows: string[][]): string {
  const width = (cell: string) => stripVTControlCharacters(cell).length;
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => width(r[i] ?? ''))));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i]! - width(cell))))
        .join('   '),
    )
    .join('\n');
}

const sign: Record<Action['verb'], string> = {
  generate: '+',
  pull: '+',
  create: '+',
  write: '+',
  recreate: '±',
  rebase: '~',
  resize: '~',
  restart: '~',
  start: '>',
  resume: '>',
  record: '~',
  update: '~',
  stop: '■',
  remove: '-',
};

function describePatch(action: Action): string[] {
  return (action.patch ?? []).map((op) => {
    const value = 'value' in op ? ` ${JSON.stringify(op.value)}` : '';
    return `      ${op.op} ${op.path}${value}`;
  });
}

/** `sha512:e70c566149fc2f2a…`: the algorithm and 16 hex digits; `unverified` for a file placed by hand. */
export const shortDigest = (digest: string | undefined) =>
  digest ? `${digest.slice(0, digest.indexOf(':') + 17)}…` : 'unverified';

/** `plan --json`: the plan as it is, data only (schema_version 1; fields are only ever added). */
export const planJson = (plan: Plan): string => JSON.stringify(plan);

export function formatPlan(plan: Plan): string {
  const notes = plan.notices.map((n) => `  note: ${n}`);
  if (plan.actions.length === 0) return [`${plan.project}: nothing to do`, ...notes].join('\n');
  const lines = [`${plan.project}: ${plan.actions.length} action${plan.actions.length === 1 ? '' : 's'}`];
  for (const action of plan.actions) {
    const subject = action.kind === 'instance' ? action.name : `${action.kind} ${action.name}`;
    lines.push(`  ${sign[action.verb]} ${subject}: ${action.verb} (${action.reason})`);
    lines.push(...describePatch(action));
  }
  return [...lines, ...notes].join('\n');
}

const past: Record<Action['verb'], string> = {
  generate: 'generated',
  pull: 'pulled',
  create: 'created',
  write: 'written',
  recreate: 'recreated',
  rebase: 'rebased',
  resize: 'resized',
  restart: 'restarted',
  start: 'started',
  resume: 'resumed',
  record: 'recorded',
  update: 'updated',
  stop: 'stopped',
  remove: 'removed',
};

/** One line per event worth a person's attention; undefined for the rest. */
export function formatEvent(event: HolosEvent): string | undefined {
  switch (event.type) {
    case 'plan':
      return event.actions === 0
        ? undefined
        : `${event.project}: applying ${event.actions} action${event.actions === 1 ? '' : 's'}`;
    case 'action': {
      const { action } = event;
      const subject = action.kind === 'instance' ? action.name : `${action.kind} ${action.name}`;
      if (event.phase === 'start')
        return action.kind === 'instance' ? `${subject}: ${action.verb} (${action.reason})` : undefined;
      if (event.phase === 'failed')
        return styleText('red', `${subject}: ${action.verb} failed: ${event.error}`);
      return `${subject}: ${past[action.verb]} in ${seconds(event.duration_ms ?? 0)}`;
    }
    case 'step':
      return `${event.instance}: ${event.message}`;
    case 'health':
      switch (event.phase) {
        case 'waiting':
          return `${event.instance}: waiting to be healthy`;
        case 'healthy':
          return `${event.instance}: healthy after ${seconds(event.duration_ms ?? 0)}`;
        case 'unhealthy':
          return styleText('red', `${event.instance}: unhealthy: ${event.output}`);
        case 'bypassed':
          return `${event.service}: healthcheck bypassed (HOLOS_HEALTH_BYPASS)`;
        default:
          return undefined;
      }
    case 'completion':
      switch (event.phase) {
        case 'waiting':
          return `${event.instance}: waiting for its main service to complete`;
        case 'completed':
          return `${event.instance}: completed after ${seconds(event.duration_ms ?? 0)}`;
        case 'failed':
          return styleText('red', `${event.instance}: did not complete: ${event.output}`);
      }
      return undefined;
    case 'waiting':
      return event.message;
    case 'download':
      return downloadLine(event);
    case 'pulled': {
      const digest = event.digest
        ? `${event.digest.slice(0, event.digest.indexOf(':') + 17)}…`
        : 'unverified';
      return `${event.image}: ${event.downloaded ? 'pulled' : 'up to date:'} ${event.path} (${digest}, ${formatBytes(event.size)})`;
    }
    case 'warning':
      return `holos: warning: ${event.message}`;
    case 'trigger':
      return `watch: ${event.reason}`;
    case 'watching':
      return undefined;
    case 'invalid':
      return styleText(
        'red',
        `watch: the file is not valid; keeping the last good state:\n${event.problems.join('\n')}`,
      );
    case 'backoff':
      return `${event.instance}: held back after repeated failures; next try in ${seconds(event.delay_ms)}`;
    case 'error':
      return styleText('red', `watch: ${event.message}`);
  }
}

/** The emitter for a verb: JSON lines on stdout, or human lines (and live downloads) on stderr. */
export function eventPrinter(json: boolean): (event: HolosEvent) => void {
  if (json) return (event) => process.stdout.write(`${JSON.stringify(stamp(event))}\n`);
  const printer = progressPrinter();
  return (event) => {
    if (event.type === 'download') return printer.download(event);
    if (event.type === 'phase') return printer.phase(event);
    const line = formatEvent(event);
    if (line !== undefined) printer.line(line);
  };
}

export const uptime = (since: string | undefined) =>
  since ? formatDuration(Math.floor((Date.now() - Date.parse(since)) / 1000) * 1000) : '';

/** The status table of `ps` and of `up`, compose style. */
export function statusTable(rows: InstanceStatus[], withProject: boolean): string {
  if (rows.length === 0) return 'no instances';
  const head = [
    ...(withProject ? ['PROJECT'] : []),
    'SERVICE',
    'INSTANCE',
    'STATE',
    'PHASE',
    'HEALTH',
    'IP',
    'UPTIME',
    'PORTS',
  ];
  return table([
    head,
    ...rows.map((r) => [
      ...(withProject ? [r.project] : []),
      r.service,
      r.instance,
      r.state,
      r.phase === r.state ? '-' : r.phase,
      r.health || '-',
      r.ip ?? '-',
      uptime(r.started_at ?? undefined) || '-',
      [
        ...(r.ssh_port ? [`127.0.0.1:${r.ssh_port}->22/tcp`] : []),
        ...r.ports.map((p) => `${p.host_ip}:${p.host_port}->${p.guest_port}/${p.protocol}`),
      ].join(', ') || '-',
    ]),
  ]);
}
