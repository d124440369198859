// compose's `restart:` for VMs: what `holos watch` does when an instance stops by itself (its
// guest powered off, QEMU crashed or was killed, the guest panicked). Pure: watch observes how
// each VM went (QMP's SHUTDOWN reason, or none before QEMU closed) and asks here.

/** How an instance stopped by itself: a clean power-off by its guest, or anything else. */
export type Exit = 'poweroff' | 'failure';

/**
 * Whether watch starts the instance again, after the `restarts` it made of it already: `always` and `unless-stopped` always (an instance the user stopped is
 * left stopped under both: watch never targets it), `on-failure` after a failure only, at most
 * N times with `on-failure:N`, `no` never.
 */
export function restartsAfter(policy: string, exit: Exit, restarts: number): boolean {
  if (policy === 'always' || policy === 'unless-stopped') return true;
  if (!policy.startsWith('on-failure') || exit !== 'failure') return false;
  const max = policy.includes(':') ? Number(policy.split(':')[1]) : Infinity;
  return restarts < max;
}

/** One line for the user when watch leaves an instance stopped; `holos start` takes its service. */
export function leftStopped(instance: string, service: string, policy: string, exit: Exit): string {
  const how =
    exit === 'poweroff' ? 'its guest powered off' : 'it stopped (QEMU exited or the guest panicked)';
  const spent = policy.startsWith('on-failure') && exit === 'failure' ? ', its restarts spent' : '';
  return `${instance}: ${how}; restart: ${policy}${spent}, so watch leaves it stopped (holos start ${service}, or holos up, starts it)`;
}
