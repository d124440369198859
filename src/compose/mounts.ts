/** A `volumes:` entry of a service: a host directory shared over 9p, or a named data disk. */
export type Mount =
  | { type: 'bind'; source: string; target: string; readOnly: boolean }
  | { type: 'volume'; source: string; target: string; readOnly: boolean };

const mountFormats = '"./dir:/target", "./dir:/target:ro" or "volname:/target"';

/** Compose's rule: a source that looks like a path is a bind mount, anything else a named volume. */
export function looksLikePath(source: string): boolean {
  return /^[./~]/.test(source) || source.includes('/');
}

/** Parses `SOURCE:TARGET[:ro|rw]`. Bind sources stay as written; resolve makes them absolute. */
export function parseMount(spec: string): Mount | string {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) return `"${spec}" is not SOURCE:TARGET[:ro]; use ${mountFormats}`;
  const [source = '', target = '', mode = 'rw'] = parts;
  if (source === '') return `"${spec}" has an empty source; use ${mountFormats}`;
  if (!target.startsWith('/'))
    return `target "${target}" must be an absolute path in the guest, such as /data`;
  if (mode !== 'ro' && mode !== 'rw') return `unknown mode "${mode}"; use ro or rw`;
  return { type: looksLikePath(source) ? 'bind' : 'volume', source, target, readOnly: mode === 'ro' };
}
