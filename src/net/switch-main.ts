// The switch process of one of a project's networks: `node dist/switch.js <instances dir>
// <pid file> [<socket name>]`, started detached by resources/segment.ts and stopped with
// SIGTERM. Without a socket name it is the default network's (as switches started before
// named networks were).
import { runSwitch, segmentSocketName } from './switch.js';

const [instancesDir, pidFile, socketName = segmentSocketName('default')] = process.argv.slice(2);
if (!instancesDir || !pidFile) {
  console.error('usage: switch.js <instances dir> <pid file> [<socket name>]');
  process.exit(2);
}
await runSwitch(instancesDir, pidFile, socketName);
