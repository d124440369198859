import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { environmentProblem } from '../cloudinit/environment.js';
import type { Issue } from './issues.js';
import type { Service } from './schema.js';

// A service's environment, as compose makes it: its env_file files in order (a later one wins),
// then `environment` (which wins over them); a name `environment` gives no value takes the one
// of the environment holos runs in, and is left out, even when an env_file sets it, when that
// has none. What comes from the host (the files, those values) is read by load, which reads the
// files a compose file names; resolve merges it, purely.

/** What the services' environments read from the host. */
export interface HostEnvironment {
  /** Each env_file by absolute path: its variables, or null when it is optional and missing. */
  files: Record<string, Record<string, string> | null>;
  /** The values of the names `environment` gives none, where the host has one. */
  variables: Record<string, string>;
}

/** Reads a file: its text, or undefined when there is no such file (other errors throw). */
export type ReadText = (path: string) => string | undefined;

const envFilePath = (dir: string, path: string) => resolve(dir, path);

/**
 * Reads the env_file files of the services and looks up the values their bare names take,
 * with an issue for each file that is required and missing, cannot be read, or holds a value
 * the guest cannot be given.
 */
export function readHostEnvironment(
  services: ReadonlyMap<string, Service>,
  dir: string,
  lookup: (name: string) => string | undefined,
  readText: ReadText,
): { host: HostEnvironment; issues: Issue[] } {
  const host: HostEnvironment = { files: {}, variables: {} };
  const issues: Issue[] = [];
  for (const [name, service] of services) {
    (service.env_file ?? []).forEach(({ path, required }, i) => {
      const at = ['services', name, 'env_file', i];
      const absolute = envFilePath(dir, path);
      let text: string | undefined;
      try {
        text = readText(absolute);
      } catch (error) {
        issues.push({
          path: at,
          anchor: 'value',
          message: `cannot read ${path}: ${(error as Error).message}`,
        });
        return;
      }
      if (text === undefined) {
        if (required)
          issues.push({
            path: at,
            anchor: 'value',
            message: `${path}: no such file (relative to the compose file); create it, or write {path: ${path}, required: false}`,
          });
        host.files[absolute] = null;
        return;
      }
      const variables = parseEnv(text) as Record<string, string>;
      for (const [variable, value] of Object.entries(variables)) {
        const problem = environmentProblem(variable, value);
        if (problem) issues.push({ path: at, anchor: 'value', message: `${path}: ${problem}` });
      }
      host.files[absolute] = variables;
    });
    for (const [variable, value] of Object.entries(service.environment ?? {})) {
      if (value !== null) continue;
      const fromHost = lookup(variable);
      if (fromHost === undefined) continue;
      const problem = environmentProblem(variable, fromHost);
      if (problem)
        issues.push({
          path: ['services', name, 'environment'],
          anchor: 'key',
          message: `${problem} (its value comes from the environment holos runs in)`,
        });
      else host.variables[variable] = fromHost;
    }
  }
  return { host, issues };
}

/** A service's environment: one name → value map. Pure. */
export function serviceEnvironment(
  service: Service,
  dir: string,
  host: HostEnvironment,
): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const { path } of service.env_file ?? []) Object.assign(merged, host.files[envFilePath(dir, path)]);
  for (const [name, value] of Object.entries(service.environment ?? {})) {
    const given = value ?? host.variables[name];
    if (given === undefined) delete merged[name];
    else merged[name] = given;
  }
  return merged;
}

/** The files a project's environments read, for watch: an edit of one is an edit of the project. */
export const envFilesOf = (services: Iterable<Service>, dir: string): string[] =>
  [...services].flatMap((s) => (s.env_file ?? []).map((f) => envFilePath(dir, f.path)));
