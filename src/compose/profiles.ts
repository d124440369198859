import { UserError } from '../errors.js';
import type { Dependency } from './schema.js';

// Compose's profiles: a service with `profiles:` is part of the project only when one of them
// is enabled (`--profile`, $HOLOS_PROFILES, `*` for all) or when it is named on the command
// line; a service without is always. A service not enabled is left alone, neither started nor
// removed: enabling a profile later changes nothing that runs (its names are in the hosts
// table from the start), and disabling one stops nothing (`holos stop` or `down` does).

interface Profiled {
  profiles: readonly string[];
  depends_on: readonly Dependency[];
}

/** The profiles enabled: `--profile` (which sets it) or $HOLOS_PROFILES, comma-separated. */
export function enabledProfiles(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  return (env.HOLOS_PROFILES ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

/**
 * The services that are part of the project under these profiles, in the order given; a
 * service named on the command line is, whatever its profiles. A service that needs one that
 * is not (a required dependency) is refused with the profile that would enable it.
 */
export function activeServices(
  services: Readonly<Record<string, Profiled>>,
  profiles: readonly string[] = enabledProfiles(),
  named: readonly string[] = [],
): string[] {
  const all = profiles.includes('*');
  const active = Object.keys(services).filter((name) => {
    const own = services[name]!.profiles;
    return own.length === 0 || all || named.includes(name) || own.some((p) => profiles.includes(p));
  });
  const problems = active.flatMap((name) =>
    services[name]!.depends_on.flatMap((d) => {
      if (!d.required || active.includes(d.service) || !(d.service in services)) return [];
      const theirs = services[d.service]!.profiles;
      return [
        `${name} depends on ${d.service}, which is only in profile ${theirs.join(', ')}; enable it with --profile ${theirs[0]!} (or HOLOS_PROFILES), or name ${d.service} too`,
      ];
    }),
  );
  if (problems.length > 0) throw new UserError(problems.join('\n'));
  return active;
}

/** The active services of a resolved project, by name, under the enabled profiles. */
export const activeServicesOf = (project: {
  services: readonly { name: string; spec: Profiled }[];
}): string[] => activeServices(Object.fromEntries(project.services.map((s) => [s.name, s.spec])));
