// The switch process of a project's private segment: `node dist/switch.js <instances dir>
// <pid file>`, started detached by resources/segment.ts and stopped with SIGTERM.
import { runSwitch } from './switch.js';

const [instancesDir, pidFile] = process.argv.slice(2);
if (!instancesDir || !pidFile) {
  console.error('usage: switch.js <instances dir> <pid file>');
  process.exit(2);
}
await runSwitch(instancesDir, pidFile);
