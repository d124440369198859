import type { Target } from '../resources/kind.js';
import type { Targets } from './plan.js';

// What each verb asks for (DESIGN.md §1): the target of every service it acts on, and of the
// instances on the host the file no longer names. Pure; every verb and watch ask here.

export type LifecycleVerb = 'up' | 'apply' | 'plan' | 'start' | 'stop' | 'down' | 'watch';

export interface TargetOptions {
  /** Services named on the command line; none means every service of the file. */
  named?: readonly string[];
  /** watch: services the user stopped with `holos stop`, left stopped. */
  stopped?: readonly string[];
  /** down: `--volumes`. */
  volumes?: boolean;
}

const every = (services: readonly string[], target: Target) =>
  Object.fromEntries(services.map((s) => [s, target])) as Record<string, Target>;

export function targetsFor(
  verb: LifecycleVerb,
  services: readonly string[],
  options: TargetOptions = {},
): Targets {
  const named = options.named ?? [];
  const chosen = named.length > 0 ? named : services;
  switch (verb) {
    case 'up':
    case 'apply':
    case 'plan':
      return { services: every(services, 'running'), strays: 'absent' };
    case 'start':
      return { services: every(chosen, 'running'), existingOnly: true };
    case 'stop':
      return { services: every(chosen, 'stopped'), ...(named.length === 0 && { strays: 'stopped' }) };
    case 'down':
      return {
        services: every(services, 'absent'),
        strays: 'absent',
        removeVolumes: options.volumes ?? false,
      };
    case 'watch': {
      const stopped = new Set(options.stopped ?? []);
      return {
        services: every(
          chosen.filter((s) => !stopped.has(s)),
          'running',
        ),
        ...(named.length === 0 && { strays: 'absent' }),
      };
    }
  }
}
