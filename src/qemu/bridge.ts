import { access, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UserError } from '../errors.js';

// A bridge network's NIC (`driver: bridge`): QEMU's `-netdev bridge` runs its setuid helper,
// which makes a tap, plugs it into an existing host bridge and hands QEMU the descriptor, if
// /etc/qemu/bridge.conf allows that bridge. Each of those can be missing on a host; checked
// before QEMU starts, so the user reads what to fix instead of QEMU's "failed to launch bridge
// helper". The bridge and the ACL are the host's: holos never creates or edits them.

/** Where Debian's qemu-system-common puts the helper, and where the helper reads its ACL (compiled in). */
export const bridgeHelper = '/usr/lib/qemu/qemu-bridge-helper';
export const bridgeAcl = '/etc/qemu/bridge.conf';

/**
 * Whether the helper's ACL lets `bridge` be used, as the helper reads it: `allow NAME|all`,
 * `deny NAME|all` (a deny wins), `include FILE`, `#` comments. `read` gives a file's text or
 * undefined when it cannot be read.
 */
export async function aclAllows(
  bridge: string,
  file: string,
  read: (path: string) => Promise<string | undefined>,
  depth = 0,
): Promise<boolean | undefined> {
  const text = await read(file);
  if (text === undefined) return undefined;
  let allowed = false;
  for (const line of text.split('\n')) {
    const [verb, arg] = line.replace(/#.*/, '').trim().split(/\s+/);
    if ((verb === 'allow' || verb === 'deny') && (arg === bridge || arg === 'all')) {
      if (verb === 'deny') return false;
      allowed = true;
    } else if (verb === 'include' && arg && depth < 8) {
      const included = await aclAllows(bridge, resolve(dirname(file), arg), read, depth + 1);
      if (included === false) return false;
      if (included) allowed = true;
    }
  }
  return allowed;
}

const readable = (path: string) => readFile(path, 'utf8').catch(() => undefined);

/** Fails with what to do when `bridge` cannot be joined through QEMU's helper on this host. */
export async function checkBridge(network: string, bridge: string): Promise<void> {
  const problem = (what: string) => new UserError(`network ${network}: ${what}`);
  const helper = await stat(bridgeHelper).catch(() => undefined);
  if (!helper) throw problem(`QEMU's bridge helper ${bridgeHelper} is missing; install qemu-system-common`);
  if (process.getuid?.() !== 0 && !(helper.mode & 0o4000))
    throw problem(
      `${bridgeHelper} is not setuid root, so it cannot plug a tap into ${bridge}; run sudo chmod u+s ${bridgeHelper} (or run holos as root)`,
    );
  if (
    !(await access(`/sys/class/net/${bridge}/bridge`).then(
      () => true,
      () => false,
    ))
  )
    throw problem(
      `host bridge ${bridge} does not exist; create it (ip link add ${bridge} type bridge) or name another in driver_opts`,
    );
  const allowed = await aclAllows(bridge, bridgeAcl, readable);
  if (!allowed)
    throw problem(
      `${allowed === undefined ? `${bridgeAcl} is missing` : `${bridgeAcl} does not allow ${bridge}`}; add the line "allow ${bridge}" to it (root-owned, mode 0644)`,
    );
}
