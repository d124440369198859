import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { writeAtomically } from '../util/fs.js';
import { listInstances, type AccessProject } from './target.js';

// `holos ssh-config`: OpenSSH client configuration for the project's instances, so that plain
// `ssh web-0`, scp, rsync and editors' remote-SSH work with the project key, and check the
// host key holos gave each guest (from a known_hosts file holos writes) instead of trusting
// whatever answers on the port.

export interface SshHost {
  instance: string;
  project: string;
  port: number;
  user: string;
  identityFile: string;
  knownHostsFile: string;
  /** The host key line (`ssh-ed25519 AAAA… comment`). */
  hostPublicKey: string;
}

/** The name ssh looks the host key up under: stable while the forwarded port changes. */
export const hostKeyAlias = (host: Pick<SshHost, 'instance' | 'project'>) =>
  `${host.instance}.${host.project}.holos`;

/**
 * A value for ssh_config: `%` doubled (IdentityFile and UserKnownHostsFile expand %-tokens),
 * double-quoted when it holds blanks. A double quote cannot be written at all.
 */
export function configValue(text: string): string {
  if (/["\n\r]/.test(text))
    throw new UserError(`${JSON.stringify(text)} cannot be written in an ssh_config file`);
  const escaped = text.replace(/%/g, '%%');
  return /[\s#]/.test(escaped) ? `"${escaped}"` : escaped;
}

/** One `Host` block per instance; each answers to its name and to `<instance>.<project>`. */
export function renderSshConfig(hosts: readonly SshHost[]): string {
  return hosts
    .map((h) =>
      [
        `Host ${h.instance} ${h.instance}.${h.project}`,
        `  HostName 127.0.0.1`,
        `  Port ${h.port}`,
        `  User ${configValue(h.user)}`,
        `  IdentityFile ${configValue(h.identityFile)}`,
        `  IdentitiesOnly yes`,
        `  UserKnownHostsFile ${configValue(h.knownHostsFile)}`,
        `  HostKeyAlias ${hostKeyAlias(h)}`,
        `  StrictHostKeyChecking yes`,
        `  UpdateHostKeys no`,
        '',
      ].join('\n'),
    )
    .join('\n');
}

/** known_hosts lines: under the alias the config uses, and as `[127.0.0.1]:<port>` for plain `ssh -p`. */
export function renderKnownHosts(hosts: readonly SshHost[]): string {
  return hosts
    .flatMap((h) => {
      const [type, key] = h.hostPublicKey.trim().split(/\s+/);
      if (!type || !key) return [];
      return [`${hostKeyAlias(h)} ${type} ${key}`, `[127.0.0.1]:${h.port} ${type} ${key}`];
    })
    .map((line) => `${line}\n`)
    .join('');
}

/** The hosts of every instance that has been started, and the known_hosts file written for them. */
export async function sshConfig(project: AccessProject): Promise<string> {
  const { sshDir } = project.layout;
  const knownHostsFile = join(sshDir, 'known_hosts');
  const hosts: SshHost[] = (await listInstances(project.layout)).flatMap((info) => {
    const applied = info.applied;
    if (!applied) return [];
    return [
      {
        instance: info.name,
        project: project.name,
        port: applied.sshPort,
        user: applied.spec.user,
        identityFile: join(sshDir, 'id_ed25519'),
        knownHostsFile,
        hostPublicKey: applied.hostPublicKey,
      },
    ];
  });
  await mkdir(sshDir, { recursive: true, mode: 0o700 });
  await writeAtomically(knownHostsFile, renderKnownHosts(hosts), 0o600);
  const header = `# holos ssh-config for project ${project.name}: ${hosts.length === 0 ? 'no instances yet (holos up)' : 'ports can change when a VM restarts; run again after holos up'}\n`;
  return header + (hosts.length > 0 ? `\n${renderSshConfig(hosts)}` : '');
}
