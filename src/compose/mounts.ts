/** A `volumes:` entry of a service: a host directory shared over 9p, or a named data disk. */
/**
 * A `volumes:` entry of a service. A bind mount's `automount: false` (qemu-compose's) shares the
 * directory without mounting it in the guest; `options` are more 9p mount options.
 */
export type Mount =
  | { type: 'bind'; source: string; target: string; readOnly: boolean; automount?: false; options?: string }
  | { type: 'volume'; source: string; target: string; readOnly: boolean };

const mountFormats = '"./dir:/target", "./dir:/target:ro" or "volname:/target"';

/** Compose's rule: a source that looks like a path is a bind mount, anything else a named volume. */
export function looksLikePath(source: string): boolean {
  return /^[./~]/.test(source) || source.includes('/');
}

/* eslint-disable no-control-regex -- these match control characters on purpose */
/** Unicode's control characters (C0, DEL, C1). In a target a newline ends its /etc/fstab line and a
 * tab splits it, and none belongs in a path anyone means to write. */
const controlCharacter = /[\x00-\x1f\x7f-\x9f]/;
const toEscape = /[\x00-\x1f\x7f-\x9f"\\]/g;
/* eslint-enable no-control-regex */

const namedEscapes: Record<string, string> = {
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '"': '\\"',
  '\\': '\\\\',
};

/** Text in double quotes as YAML would write it, so a control character shows escaped, never raw. */
const quote = (text: string) =>
  `"${text.replace(toEscape, (ch) => namedEscapes[ch] ?? `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`)}"`;

const controlNames: Record<string, string> = { '\t': 'a tab', '\n': 'a newline', '\r': 'a carriage return' };

/**
 * Why a mount target cannot be used, or undefined. The target is a field of an /etc/fstab line
 * and a word of the bootcmd that mounts it; mounting over the guest's root, or on a path that
 * climbs with "..", would hide the system. Backslashes are allowed: a Linux path may hold them,
 * and the fstab line escapes them as \134 (fstabLine in cloudinit/render.ts).
 */
export function targetProblem(target: string): string | undefined {
  if (!target.startsWith('/'))
    return `target ${quote(target)} must be an absolute path in the guest, such as /data`;
  const control = controlCharacter.exec(target)?.[0];
  if (control !== undefined) {
    const what = controlNames[control] ?? `the control character ${quote(control)}`;
    return `target ${quote(target)} contains ${what}; a mount target is an absolute path without control characters`;
  }
  const segments = target.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.length === 0)
    return `target ${quote(target)} is the guest's root directory; mount on a directory below it, such as /data`;
  if (segments.includes('..'))
    return `target ${quote(target)} contains ".."; write the directory without "..", such as /data`;
  return undefined;
}

/** Parses `SOURCE:TARGET[:ro|rw]`. Bind sources stay as written; resolve makes them absolute. */
export function parseMount(spec: string): Mount | string {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3)
    return `${quote(spec)} is not SOURCE:TARGET[:ro]; use ${mountFormats}`;
  const [source = '', target = '', mode = 'rw'] = parts;
  if (source === '') return `${quote(spec)} has an empty source; use ${mountFormats}`;
  const problem = targetProblem(target);
  if (problem !== undefined) return problem;
  if (mode !== 'ro' && mode !== 'rw') return `unknown mode ${quote(mode)}; use ro or rw`;
  return { type: looksLikePath(source) ? 'bind' : 'volume', source, target, readOnly: mode === 'ro' };
}
