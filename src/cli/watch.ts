import { watch } from '../reconcile/watch.js';
import { openProject } from '../session.js';
import { stamp } from '../events.js';
import { checkServices, durationOption } from './lifecycle.js';
import { createLogger, stateDirOf, type GlobalOptions } from './context.js';
import { eventPrinter } from './output.js';

// holos watch: its own module, so that the other verbs never load the file watcher.

export async function watchVerb(
  g: GlobalOptions,
  named: string[],
  options: { resync: string; json?: boolean },
): Promise<void> {
  const stateDir = stateDirOf(g);
  const where = { cwd: process.cwd(), files: g.file, projectName: g.projectName };
  const { project } = await openProject(stateDir, where);
  checkServices(
    project.services.map((s) => s.name),
    named,
  );
  const resyncMs = durationOption(options.resync, '--resync')!;
  const logger = await createLogger(g);
  const print = eventPrinter(options.json ?? false);
  const controller = new AbortController();
  const stop = () => {
    if (!options.json) console.error('watch: stopping after the action in flight; the VMs keep running');
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await watch({
    stateDir,
    ...where,
    services: named,
    resyncMs,
    signal: controller.signal,
    healthBypass: process.env.HOLOS_HEALTH_BYPASS === '1',
    emit: (event) => {
      logger?.info(stamp(event), event.type);
      print(event);
    },
    warn: (message) => {
      logger?.warn(message);
      print({ type: 'warning', message });
    },
  });
}
