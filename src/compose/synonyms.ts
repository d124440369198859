import { formatPath, type Issue } from './issues.js';
import type { Path } from './source.js';
import type { Service } from './schema.js';

// compose writes some settings in several places: `replicas`, `scale` and `deploy.replicas`;
// `cpus` and `deploy.resources.limits.cpus` for holos's `vm.vcpu`; `mem_limit` and
// `deploy.resources.limits.memory` for `vm.memory_mb`; `deploy.restart_policy` for `restart`.
// Any of them may be used, and several if they agree; the service then carries the one value
// in holos's own key, so nothing after load knows the synonyms.

interface Setting {
  /** holos's key, then compose's others, each a path in the service. */
  places: Path[];
  /** The value at a place of the parsed service, comparable across places. */
  read: (service: Service, place: Path) => unknown;
  write: (service: Service, value: unknown) => void;
  /** The value as a message says it. */
  show?: (value: unknown) => string;
}

const at = (value: unknown, path: Path): unknown =>
  path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], value);

const plain: Setting['read'] = (service, place) => at(service, place);

/** deploy.restart_policy as a restart policy: none is no, any is always. */
function restartOf(policy: { condition: 'none' | 'on-failure' | 'any'; max_attempts?: number }): string {
  if (policy.condition === 'none') return 'no';
  if (policy.condition === 'any') return 'always';
  return policy.max_attempts === undefined ? 'on-failure' : `on-failure:${policy.max_attempts}`;
}

const settings: Setting[] = [
  {
    places: [['replicas'], ['scale'], ['deploy', 'replicas']],
    read: plain,
    write: (s, v) => (s.replicas = v as number),
  },
  {
    places: [['vm', 'vcpu'], ['cpus'], ['deploy', 'resources', 'limits', 'cpus']],
    read: plain,
    write: (s, v) => (s.vm.vcpu = v as number),
  },
  {
    places: [['vm', 'memory_mb'], ['mem_limit'], ['deploy', 'resources', 'limits', 'memory']],
    read: plain,
    write: (s, v) => (s.vm.memory_mb = v as number),
    show: (v) => `${String(v)} MiB`,
  },
  {
    places: [['restart'], ['deploy', 'restart_policy']],
    read: (s, place) => (place[0] === 'deploy' ? restartOf(s.deploy!.restart_policy!) : s.restart),
    write: (s, v) => (s.restart = v as string),
  },
];

/**
 * Puts each setting written under one of compose's names into holos's key of `service` (the
 * parsed one), and returns an issue for each place that disagrees with the first one written.
 * `raw` is the service as the file has it: what is written, not what defaults filled in.
 */
export function applySynonyms(name: string, raw: unknown, service: Service): Issue[] {
  const issues: Issue[] = [];
  for (const setting of settings) {
    const written = setting.places
      .filter((place) => at(raw, place) !== undefined && at(service, place) !== undefined)
      .map((place) => ({ place, value: setting.read(service, place) }));
    const show = setting.show ?? String;
    const [first, ...others] = written;
    if (!first) continue;
    for (const other of others)
      if (other.value !== first.value)
        issues.push({
          path: ['services', name, ...other.place],
          message: `${show(other.value)} disagrees with ${formatPath(['services', name, ...first.place])}: ${show(first.value)}; keep one of them`,
          anchor: 'value',
        });
    setting.write(service, first.value);
  }
  delete service.scale;
  delete service.cpus;
  delete service.mem_limit;
  delete service.deploy;
  return issues;
}
