import { parseMount } from './mounts.js';
import { parsePort } from './ports.js';
import type { Path } from './source.js';

// Several compose files (`-f a.yaml -f b.yaml`, holos.override.yaml) are one project, merged as
// the compose specification's merge rules say: mappings merge key by key, the later file winning;
// sequences take the later file's entries after the earlier ones, except that an entry with the
// same unique key (a volume's target, a port, a variable's name) replaces the earlier one; a
// command is replaced whole; `!reset` removes a value and `!override` replaces it unmerged.
// The merged data remembers where each part was written, so a problem still names its file,
// line and column.

/** One file's data: `source` is what can turn a path in it into a position. */
export interface Layer<Source> {
  source: Source;
  data: unknown;
  /** Paths of the values tagged `!reset` (removed) and `!override` (replaced, not merged). */
  resets: readonly Path[];
  overrides: readonly Path[];
}

/** Where part of the merged data was written: the file, and its path there. */
export interface Origin<Source> {
  source: Source;
  path: Path;
}

type Container = Record<string, unknown> | unknown[];
type Unique = (entry: unknown) => string | undefined;

/** `out[key] = value`, also for a key such as `__proto__`, which assignment would not make. */
function put(out: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}

const isMapping = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** `A=1` is A, `A` is A: a variable or label by its name. */
const nameBeforeEquals: Unique = (entry) => (typeof entry === 'string' ? entry.split('=')[0] : undefined);
/** `db.local:10.0.0.5` or `db.local=10.0.0.5`: a host by its name. */
const hostName: Unique = (entry) => (typeof entry === 'string' ? entry.split(/[=:]/)[0] : undefined);

/** A port by compose's unique key, {ip, target, published, protocol}, short or long. */
const portKey: Unique = (entry) => {
  if (typeof entry === 'string' || typeof entry === 'number') {
    const port = parsePort(String(entry));
    return typeof port === 'string'
      ? undefined
      : JSON.stringify([port.hostIp, port.host, port.guest, port.protocol]);
  }
  if (!isMapping(entry)) return undefined;
  const { host_ip, published, target, protocol } = entry;
  return JSON.stringify([host_ip ?? '127.0.0.1', Number(published ?? 0), target, protocol ?? 'tcp']);
};

const mountTarget: Unique = (entry) => {
  if (typeof entry === 'string') {
    const mount = parseMount(entry);
    return typeof mount === 'string' ? undefined : mount.target;
  }
  return isMapping(entry) ? String(entry.target) : undefined;
};

const field =
  (name: string): Unique =>
  (entry) =>
    isMapping(entry) ? String(entry[name]) : typeof entry === 'string' ? entry : undefined;

/**
 * The rules that are not "merge mappings, union sequences", by path (`*` is any key).
 * `replace`: the later value wins whole. A function: the unique key of a sequence's entries.
 * `asMapping`: the key is a list or a mapping; a list becomes a mapping when the other file
 * wrote the mapping, with `toPair` splitting each entry.
 */
const rules: [pattern: string[], rule: 'replace' | Unique][] = [
  // Commands are argv lists: their entries are words in order, not a set.
  [['services', '*', 'command'], 'replace'],
  [['services', '*', 'entrypoint'], 'replace'],
  [['services', '*', 'healthcheck', 'test'], 'replace'],
  [['services', '*', 'vm', 'extra_args'], 'replace'],
  // One subnet per network.
  [['networks', '*', 'ipam', 'config'], 'replace'],
  [['services', '*', 'ports'], portKey],
  [['services', '*', 'volumes'], mountTarget],
  [['services', '*', 'environment'], nameBeforeEquals],
  [['services', '*', 'labels'], nameBeforeEquals],
  [['services', '*', 'extra_hosts'], hostName],
  [['services', '*', 'env_file'], field('path')],
  [['services', '*', 'devices'], field('pci')],
  [['services', '*', 'cloud_init', 'write_files'], field('path')],
];

/** Keys a file may write as a list or as a mapping; how a list entry becomes a pair. */
const listOrMapping: [pattern: string[], toPair: (entry: unknown) => [string, unknown]][] = [
  [['services', '*', 'environment'], splitAt(/=/)],
  [['services', '*', 'labels'], splitAt(/=/)],
  [['services', '*', 'extra_hosts'], splitAt(/[=:]/)],
  [['services', '*', 'networks'], (entry) => [String(entry), null]],
  [['services', '*', 'depends_on'], (entry) => [String(entry), {}]],
];

function splitAt(separator: RegExp) {
  return (entry: unknown): [string, unknown] => {
    const text = String(entry);
    const at = text.search(separator);
    return at < 0 ? [text, null] : [text.slice(0, at), text.slice(at + 1)];
  };
}

function matches(pattern: readonly string[], path: Path): boolean {
  return pattern.length === path.length && pattern.every((p, i) => p === '*' || p === String(path[i]));
}

const ruleAt = (path: Path) => rules.find(([pattern]) => matches(pattern, path))?.[1];
const pairOf = (path: Path) => listOrMapping.find(([pattern]) => matches(pattern, path))?.[1];
const pathKey = (path: Path) => JSON.stringify(path);

/** The merged data of several files, and where each part of it was written. */
export class Merged<Source> {
  value: unknown = undefined;
  /** For each container of the merged data (all are made here), where each entry came from. */
  private readonly origins = new WeakMap<object, Map<string, Origin<Source>>>();
  private readonly first: Source;

  constructor(layers: readonly Layer<Source>[]) {
    this.first = layers[0]!.source;
    for (const layer of layers) {
      const tags = {
        resets: new Set(layer.resets.map(pathKey)),
        overrides: new Set(layer.overrides.map(pathKey)),
      };
      this.value = this.merge(this.value, layer.data, [], layer.source, tags);
    }
  }

  /** The file and path in it where `path` of the merged data was written (or its nearest parent). */
  originOf(path: Path): Origin<Source> {
    let origin: Origin<Source> = { source: this.first, path: [] };
    let node = this.value;
    for (const segment of path) {
      const container = node !== null && typeof node === 'object' ? (node as Container) : undefined;
      origin = (container && this.origins.get(container)?.get(String(segment))) ?? {
        source: origin.source,
        path: [...origin.path, segment],
      };
      node = container ? (container as Record<string, unknown>)[segment] : undefined;
    }
    return origin;
  }

  private originIn(container: Container, key: string | number): Origin<Source> | undefined {
    return this.origins.get(container)?.get(String(key));
  }

  private record(container: Container, key: string | number, origin: Origin<Source>): void {
    let map = this.origins.get(container);
    if (!map) this.origins.set(container, (map = new Map<string, Origin<Source>>()));
    map.set(String(key), origin);
  }

  /**
   * `base` (merged so far, or undefined) with `next` (the file `source` has at `path`) merged
   * in. Containers are always made anew, so every one of them knows where its entries came from.
   */
  private merge(base: unknown, next: unknown, path: Path, source: Source, tags: Tags): unknown {
    const replace = base === undefined || tags.overrides.has(pathKey(path)) || ruleAt(path) === 'replace';
    const toPair = pairOf(path);
    if (
      !replace &&
      toPair &&
      Array.isArray(next) !== Array.isArray(base) &&
      (isMapping(next) || isMapping(base))
    ) {
      // One file wrote a list, the other a mapping: both become mappings, merged by name.
      const fresh = this.merge(undefined, next, path, source, tags);
      return this.merge(this.asMapping(base, toPair), this.asMapping(fresh, toPair), path, source, tags);
    }
    if (isMapping(next)) {
      const out: Record<string, unknown> = {};
      if (!replace && isMapping(base))
        for (const [key, value] of Object.entries(base)) {
          put(out, key, value);
          const origin = this.originIn(base, key);
          if (origin) this.record(out, key, origin);
        }
      for (const [key, value] of Object.entries(next)) {
        const at = [...path, key];
        if (tags.resets.has(pathKey(at))) {
          delete out[key];
          continue;
        }
        // A mapping in both files keeps the first file's place: it is defined there.
        const both = isMapping(out[key]) && isMapping(value);
        put(out, key, this.merge(out[key], value, at, source, tags));
        if (!both) this.record(out, key, this.originIn(next, key) ?? { source, path: at });
      }
      return out;
    }
    if (Array.isArray(next)) {
      const out: unknown[] = [];
      if (!replace && Array.isArray(base))
        base.forEach((entry, i) => {
          out.push(entry);
          const origin = this.originIn(base, i);
          if (origin) this.record(out, i, origin);
        });
      const rule = ruleAt(path);
      // Without a rule, or for an entry the rule cannot read, an entry is its own key: a union.
      const unique = (entry: unknown) =>
        (typeof rule === 'function' ? rule(entry) : undefined) ?? JSON.stringify(entry);
      // Only the earlier files' entries are replaced, each once: one file's own list stays as
      // it is written (its duplicates are the checks' to report), and merging it again is a no-op.
      const earlierKeys: (string | undefined)[] = out.map(unique);
      next.forEach((entry, i) => {
        const at = [...path, i];
        if (tags.resets.has(pathKey(at))) return;
        const same = earlierKeys.indexOf(unique(entry));
        if (same >= 0) earlierKeys[same] = undefined;
        const index = same < 0 ? out.length : same;
        // An entry with the same unique key: mappings merge (a long-form volume), others are replaced.
        const earlier = same >= 0 && isMapping(out[same]) && isMapping(entry) ? out[same] : undefined;
        out[index] = this.merge(earlier, entry, at, source, tags);
        this.record(out, index, this.originIn(next, i) ?? { source, path: at });
      });
      return out;
    }
    return next;
  }

  /** A list as a mapping of its entries (each keeping its origin); a mapping as it is. */
  private asMapping(value: unknown, toPair: (entry: unknown) => [string, unknown]): unknown {
    if (!Array.isArray(value)) return value;
    const out: Record<string, unknown> = {};
    value.forEach((entry, i) => {
      const [key, pairValue] = toPair(entry);
      put(out, key, pairValue);
      const origin = this.originIn(value, i);
      if (origin) this.record(out, key, origin);
    });
    return out;
  }
}

interface Tags {
  resets: Set<string>;
  overrides: Set<string>;
}
