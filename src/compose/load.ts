import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import { ComposeProblems, UserError } from '../errors.js';
import { crossChecks, type PathKind } from './checks.js';
import { formatPath, fromZod, type Issue } from './issues.js';
import { composeSchema, dnsLabel, serviceSchema, type Compose, type Service } from './schema.js';
import { SourceFile } from './source.js';

export const defaultFileNames = ['holos.yaml', 'holos.yml'];

/** A compose file that passed every check. */
export interface LoadedCompose {
  file: string;
  /** Relative paths in the file (images, bind mounts, dockerfiles) are relative to this. */
  dir: string;
  project: string;
  compose: Compose;
}

/** The outcome of validation: the file and, when it is valid, the model; else every problem. */
export type Validation =
  { ok: true; file: string; loaded: LoadedCompose } | { ok: false; file: string; problems: string[] };

/** `-f`, else `$HOLOS_FILE`, else holos.yaml or holos.yml in the working directory. */
export function findComposeFile(cwd: string, explicit?: string): string {
  const chosen = explicit ?? process.env.HOLOS_FILE;
  if (chosen) return resolve(cwd, chosen);
  for (const name of defaultFileNames) {
    const candidate = resolve(cwd, name);
    if (statPath(candidate) === 'file') return candidate;
  }
  throw new UserError(`no holos.yaml or holos.yml in ${cwd}; create one, or name it with -f FILE`);
}

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
      `-p ${override}: a project name must be a DNS label (lowercase letters, digits and "-")`,
    );
  }
  if (compose.name) return compose.name;
  const derived = normaliseProjectName(basename(dir));
  if (derived) return derived;
  return {
    path: [],
    anchor: 'key',
    message: `cannot derive a project name from the directory "${basename(dir)}"; add name: to the file`,
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

function problemLines(source: SourceFile, issues: Issue[]): string[] {
  const name = displayName(source.file);
  const located = issues.map((issue) => ({ issue, position: source.positionOf(issue.path, issue.anchor) }));
  located.sort(
    (a, b) =>
      (a.position?.line ?? 0) - (b.position?.line ?? 0) || (a.position?.col ?? 0) - (b.position?.col ?? 0),
  );
  return located.map(({ issue, position }) => {
    const where = position ? `${name}:${position.line}:${position.col}` : name;
    return issue.path.length > 0
      ? `${where}: ${formatPath(issue.path)}: ${issue.message}`
      : `${where}: ${issue.message}`;
  });
}

/** Reads and checks a compose file. Touches nothing but the file and the paths it names. */
export function validateComposeFile(file: string, options: { projectName?: string } = {}): Validation {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new UserError(`cannot read ${displayName(file)}: ${reason}`);
  }
  const source = new SourceFile(file, text);
  const syntax = source.syntaxErrors();
  if (syntax.length > 0) {
    const name = displayName(file);
    return {
      ok: false,
      file,
      problems: syntax.map((e) => `${name}:${e.position.line}:${e.position.col}: ${e.message}`),
    };
  }
  let data: unknown;
  try {
    data = source.document.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    // Unresolved aliases and alias bombs surface only when the document is turned into data.
    return { ok: false, file, problems: [`${displayName(file)}: ${(error as Error).message}`] };
  }
  const raw = withoutExtensions(data);
  if (raw === null || raw === undefined)
    return {
      ok: false,
      file,
      problems: [`${displayName(file)}: the file is empty; it needs at least a services: mapping`],
    };

  const dir = dirname(file);
  const result = composeSchema.safeParse(raw);
  const issues = result.success ? [] : fromZod(result.error.issues, composeSchema, raw);

  const serviceEntries = Object.entries(mappingAt(raw, 'services'));
  const services = new Map<string, Service>();
  for (const [name, value] of serviceEntries)
    if (dnsLabel.test(name)) services.set(name, salvageService(value));
  issues.push(
    ...crossChecks({
      serviceNames: serviceEntries.map(([name]) => name),
      services,
      volumeNames: new Set(Object.keys(mappingAt(raw, 'volumes'))),
      baseDir: dir,
      statPath,
    }),
  );

  const project = projectName(result.success ? result.data : {}, dir, options.projectName);
  if (typeof project !== 'string') issues.push(project);
  if (issues.length > 0 || !result.success || typeof project !== 'string')
    return { ok: false, file, problems: problemLines(source, issues) };
  return { ok: true, file, loaded: { file, dir, project, compose: result.data } };
}

/** Loads a valid compose file or throws a UserError listing every problem. */
export function loadCompose(options: { cwd: string; file?: string; projectName?: string }): LoadedCompose {
  const validation = validateComposeFile(findComposeFile(options.cwd, options.file), options);
  if (!validation.ok) throw new ComposeProblems(validation.problems);
  return validation.loaded;
}
