import { isUtf8 } from 'node:buffer';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, delimiter, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { interpolateDocument, type Lookup } from './interpolate.js';
import { ComposeProblems, UserError } from '../errors.js';
import { crossChecks, type PathKind } from './checks.js';
import { applySynonyms } from './synonyms.js';
import { readHostEnvironment, type HostEnvironment } from './environment.js';
import { escapeUnprintable, formatPath, fromZod, printable, quote, type Issue } from './issues.js';
import {
  composeSchema,
  dnsLabel,
  networkEntry,
  serviceSchema,
  type Compose,
  type NetworkDecl,
  type Service,
} from './schema.js';
import { Merged, type Layer, type Origin } from './merge.js';
import { defaultLimits, SourceFile, type Limits, type Path, type Position, type Problem } from './source.js';

export const defaultFileNames = ['holos.yaml', 'holos.yml'];

/** A compose file that passed every check. */
export interface LoadedCompose {
  /** The file the project is defined by: the first of `files`. */
  file: string;
  /** Every file merged into it, in order (`-f a -f b`, holos.override.yaml). */
  files: string[];
  /** What the services' environments read from the host: env_file files, variables (environment.ts). */
  host: HostEnvironment;
  /** Relative paths in the file (images, bind mounts, dockerfiles) are relative to this. */
  dir: string;
  project: string;
  compose: Compose;
}

/** The outcome of validation: the file and, when it is valid, the model; else every problem. */
export type Validation =
  { ok: true; file: string; loaded: LoadedCompose } | { ok: false; file: string; problems: string[] };

/** Beside holos.yaml, merged over it when no file is named (compose's compose.override.yaml). */
export const overrideFileNames = ['holos.override.yaml', 'holos.override.yml'];

/**
 * The compose files of the project, first the one it is defined by: each `-f` in order, else
 * those `$HOLOS_FILE` lists (separated by ":", as compose's COMPOSE_FILE), else holos.yaml (or
 * holos.yml) in the working directory and the holos.override.yaml beside it, if there is one.
 */
export function findComposeFiles(cwd: string, explicit: readonly string[] = []): string[] {
  const chosen =
    explicit.length > 0 ? explicit : (process.env.HOLOS_FILE ?? '').split(delimiter).filter((f) => f !== '');
  if (chosen.length > 0) return chosen.map((file) => resolve(cwd, file));
  const first = (names: string[]) =>
    names.map((name) => resolve(cwd, name)).find((candidate) => statPath(candidate) === 'file');
  const main = first(defaultFileNames);
  if (main === undefined)
    throw new UserError(`no holos.yaml or holos.yml in ${cwd}; create one, or name it with -f FILE`);
  const override = first(overrideFileNames);
  return override === undefined ? [main] : [main, override];
}

/** The file a project is defined by: the first of findComposeFiles. */
export const findComposeFile = (cwd: string, explicit: readonly string[] = []) =>
  findComposeFiles(cwd, explicit)[0]!;

function statPath(path: string): PathKind {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'file';
  } catch {
    return 'missing';
  }
}

/** Compose's extension fields: `x-*` keys are allowed anywhere and mean nothing to holos. */
function withoutExtensions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutExtensions);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith('x-'))
      .map(([key, v]) => [key, withoutExtensions(v)]),
  );
}

/**
 * The valid parts of a service, with defaults in place of the invalid ones, so the
 * cross-field checks can still report on a service whose ports (say) are wrong.
 */
/** The declared networks that pass the schema on their own, for the checks that span them. */
function salvageNetworks(raw: unknown): Map<string, NetworkDecl> {
  const networks = new Map<string, NetworkDecl>();
  for (const [name, value] of Object.entries(mappingAt(raw, 'networks'))) {
    const parsed = networkEntry.safeParse(value);
    if (dnsLabel.test(name) && parsed.success) networks.set(name, parsed.data);
  }
  return networks;
}

function salvageService(raw: unknown): Service {
  const fields = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const salvaged = Object.entries(serviceSchema.shape).map(([key, schema]) => {
    const parsed = schema.safeParse(fields[key]);
    return [key, parsed.success ? parsed.data : schema.safeParse(undefined).data];
  });
  return Object.fromEntries(salvaged) as Service;
}

/** A project name from a directory name, the way compose does it: lowercase, [a-z0-9-] only. */
export function normaliseProjectName(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
}

function projectName(compose: { name?: string }, dir: string, override?: string): string | Issue {
  if (override !== undefined) {
    if (dnsLabel.test(override)) return override;
    throw new UserError(
      printable(`-p ${override}: a project name must be a DNS label (lowercase letters, digits and "-")`),
    );
  }
  if (compose.name) return compose.name;
  const derived = normaliseProjectName(basename(dir));
  if (derived) return derived;
  return {
    path: [],
    anchor: 'key',
    message: `cannot derive a project name from the directory ${quote(basename(dir))}; add name: to the file`,
  };
}

/** The mapping under `key`, or an empty one when the file has something else there. */
function mappingAt(raw: unknown, key: string): Record<string, unknown> {
  const value = (raw as Record<string, unknown>)[key];
  return value && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/** A file name as the user would type it: relative to the working directory when inside it. */
export function displayName(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel;
}

/**
 * One line per distinct problem, files in their order and each in file order: the same message
 * at the same place is said once.
 */
function problemLines(files: readonly string[], problems: Problem[]): string[] {
  const fileOf = (problem: Problem) => problem.file ?? files[0]!;
  const where = (problem: Problem) => {
    const name = escapeUnprintable(displayName(fileOf(problem)));
    return problem.position ? `${name}:${problem.position.line}:${problem.position.col}` : name;
  };
  const sorted = [...problems].sort(
    (a, b) =>
      files.indexOf(fileOf(a)) - files.indexOf(fileOf(b)) ||
      (a.position?.line ?? 0) - (b.position?.line ?? 0) ||
      (a.position?.col ?? 0) - (b.position?.col ?? 0),
  );
  return [...new Set(sorted.map((problem) => `${where(problem)}: ${printable(problem.message)}`))];
}

/** An issue at `path` of `source`'s data (or, through `origin`, of the merged data) as a problem. */
function located(issue: Issue, origin: (path: Path) => Origin<SourceFile>): Problem {
  const { source, path } = origin(issue.path);
  return {
    file: source.file,
    position: source.positionOf(path, issue.anchor),
    message: issue.path.length > 0 ? `${formatPath(issue.path)}: ${issue.message}` : issue.message,
  };
}

const inFile = (source: SourceFile) => (path: Path) => ({ source, path });

/** A file's text, or undefined when there is none (an optional env_file may be missing). */
function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (['ENOENT', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}

function cannotRead(file: string, error: unknown): UserError {
  const reason =
    (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
  return new UserError(printable(`cannot read ${displayName(file)}: ${reason}`));
}

/** At most `limit` bytes of the file, and one more if it has them: a huge file costs nothing. */
function readAtMost(file: string, limit: number): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    throw cannotRead(file, error);
  }
  try {
    // In chunks, not one buffer of the limit: a pipe has no size to ask for, and a raised limit
    // (the benchmarks use 1 GiB) must not allocate it.
    const chunks: Buffer[] = [];
    let length = 0;
    while (length <= limit) {
      const chunk = Buffer.allocUnsafe(Math.min(2 ** 16, limit + 1 - length));
      const read = readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      length += read;
    }
    return Buffer.concat(chunks, length);
  } catch (error) {
    throw cannotRead(file, error);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where the first byte that is not UTF-8 is. Decoding puts U+FFFD in its place; until then every
 * character is what the file says, so their encoded lengths give the offset. A U+FFFD the file
 * itself spells (EF BF BD) is skipped.
 */
function firstInvalidByte(bytes: Buffer, text: string): Position & { offset: number } {
  let [offset, line, col] = [0, 1, 1];
  for (const char of text) {
    if (
      char === '\ufffd' &&
      !(bytes[offset] === 0xef && bytes[offset + 1] === 0xbf && bytes[offset + 2] === 0xbd)
    )
      break;
    const code = char.codePointAt(0)!;
    offset += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
    [line, col] = char === '\n' ? [line + 1, 1] : [line, col + char.length];
  }
  return { offset, line, col };
}

/** The file as text, or what is wrong with its bytes: too many of them, or not UTF-8. */
function readText(file: string, maxBytes: number): string | Problem {
  const bytes = readAtMost(file, maxBytes);
  if (bytes.length > maxBytes)
    return {
      message: `the file is larger than ${maxBytes} bytes, the most a compose file may have; is this the right file?`,
    };
  const text = bytes.toString('utf8');
  if (isUtf8(bytes)) return text;
  const { offset, line, col } = firstInvalidByte(bytes, text);
  const byte = bytes[offset]!.toString(16).padStart(2, '0');
  return {
    position: { line, col },
    message: `byte 0x${byte} at offset ${offset} is not UTF-8; save the file as UTF-8`,
  };
}

export interface ValidateOptions {
  projectName?: string;
  /** The variables a file's `${…}` read (default: the process's environment). */
  env?: Readonly<Record<string, string | undefined>>;
  /** The `.env` file (default: $HOLOS_ENV_FILE, which --env-file sets, else `.env` beside the file). */
  envFile?: string;
  /** Tighter or looser bounds than defaultLimits: tests and benchmarks use them. */
  limits?: Partial<Limits>;
}

/** The `.env` a compose file reads: the one named (--env-file, $HOLOS_ENV_FILE), else the one beside it. */
export function envFileOf(file: string, options: Pick<ValidateOptions, 'env' | 'envFile'> = {}) {
  const named = options.envFile ?? ((options.env ?? process.env).HOLOS_ENV_FILE || undefined);
  return {
    path: named === undefined ? join(dirname(file), '.env') : resolve(named),
    named: named !== undefined,
  };
}

/**
 * The variables of `${…}`: the environment, then the `.env` file (the environment wins, as in
 * compose). A `.env` named explicitly must exist; the default one may not. A message when the
 * file cannot be read.
 */
function variables(file: string, options: ValidateOptions): Lookup | string {
  const env = options.env ?? process.env;
  const { path, named } = envFileOf(file, options);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !named) return (name) => env[name];
    return `${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such env file' : (error as Error).message}`;
  }
  const fromFile = parseEnv(text);
  return (name) => env[name] ?? fromFile[name];
}

/** Reads and checks a compose file. Touches nothing but the file and the paths it names. */
export function validateComposeFile(file: string, options: ValidateOptions = {}): Validation {
  return validateComposeFiles([file], options);
}

/** One file read, interpolated and parsed: a layer of the merge, or what is wrong with it. */
function readLayer(
  file: string,
  lookup: Lookup,
  limits: Limits,
  first: boolean,
): Layer<SourceFile> | Problem[] {
  const inThis = (problems: Problem[]) => problems.map((problem) => ({ file, ...problem }));
  const text = readText(file, limits.maxBytes);
  if (typeof text !== 'string') return inThis([text]);
  // Size, depth and alias expansion are bounded here, so nothing below can run out of stack
  // or memory: toJS, withoutExtensions, the merge and zod all recurse.
  const source = new SourceFile(file, text, limits);
  if (!source.document || source.problems.length > 0) return inThis(source.problems);
  const unresolved = interpolateDocument(source.document, lookup);
  if (unresolved.length > 0) return unresolved.map((issue) => located(issue, inFile(source)));
  const { resets, overrides, problems } = source.mergeTags();
  if (problems.length > 0) return inThis(problems);
  let data: unknown;
  try {
    // SourceFile counted every alias and merge key expanded (which maxAliasCount does not).
    data = source.document.toJS({ maxAliasCount: -1 });
  } catch (error) {
    return inThis([{ message: (error as Error).message }]);
  }
  if (data === null || data === undefined) {
    // An override file may be empty; the file a project is defined by may not.
    if (first) return inThis([{ message: 'the file is empty; it needs at least a services: mapping' }]);
    data = {};
  }
  return { source, data: withoutExtensions(data), resets, overrides };
}

/**
 * Reads, merges (compose/merge.ts) and checks the compose files of one project, the first
 * defining it: its directory is the project's, the one relative paths and `.env` are beside.
 */
export function validateComposeFiles(files: readonly string[], options: ValidateOptions = {}): Validation {
  const limits = { ...defaultLimits, ...options.limits };
  const file = files[0]!;
  const failed = (problems: Problem[]): Validation => ({
    ok: false,
    file,
    problems: problemLines(files, problems),
  });
  const lookup = variables(file, options);
  if (typeof lookup === 'string') return failed([{ message: lookup }]);
  const layers: Layer<SourceFile>[] = [];
  const unreadable: Problem[] = [];
  files.forEach((each, i) => {
    const layer = readLayer(each, lookup, limits, i === 0);
    if (Array.isArray(layer)) unreadable.push(...layer);
    else layers.push(layer);
  });
  if (unreadable.length > 0) return failed(unreadable);
  const merged = new Merged(layers);
  const raw = merged.value;
  const origin = (path: Path) => merged.originOf(path);

  const dir = dirname(file);
  const result = composeSchema.safeParse(raw);
  const issues = result.success ? [] : fromZod(result.error.issues, composeSchema, raw);

  const serviceEntries = Object.entries(mappingAt(raw, 'services'));
  const services = new Map<string, Service>();
  for (const [name, value] of serviceEntries)
    if (dnsLabel.test(name)) {
      const salvaged = salvageService(value);
      issues.push(...applySynonyms(name, value, salvaged));
      services.set(name, salvaged);
    }
  // The checks saw the settings in holos's keys; so does everything after load.
  if (result.success)
    for (const [name, service] of Object.entries(result.data.services))
      applySynonyms(name, mappingAt(raw, 'services')[name], service);
  issues.push(
    ...crossChecks({
      serviceNames: serviceEntries.map(([name]) => name),
      services,
      volumeNames: new Set(Object.keys(mappingAt(raw, 'volumes'))),
      networks: salvageNetworks(raw),
      baseDir: dir,
      statPath,
    }),
  );

  // env_file files are read here, as files the compose file names; a bare `environment` name
  // takes its value from where ${…} take theirs.
  const { host, issues: environmentIssues } = readHostEnvironment(services, dir, lookup, readIfExists);
  issues.push(...environmentIssues);

  const project = projectName(result.success ? result.data : {}, dir, options.projectName);
  if (typeof project !== 'string') issues.push(project);
  if (issues.length > 0 || !result.success || typeof project !== 'string')
    return failed(issues.map((issue) => located(issue, origin)));
  return { ok: true, file, loaded: { file, files: [...files], host, dir, project, compose: result.data } };
}

/** Loads a project's valid compose files or throws a UserError listing every problem. */
export function loadCompose(options: {
  cwd: string;
  files?: readonly string[];
  projectName?: string;
}): LoadedCompose {
  const validation = validateComposeFiles(findComposeFiles(options.cwd, options.files), options);
  if (!validation.ok) throw new ComposeProblems(validation.problems);
  return validation.loaded;
}
