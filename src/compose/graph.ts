/** `depends_on` as a graph: start levels for apply, and the cycle to name when there is one. */

export type DependencyGraph = ReadonlyMap<string, readonly string[]>;

/**
 * Services grouped in start levels: every service's dependencies are in an earlier level.
 * Services of one level may start in parallel. Names are sorted inside a level so the
 * order is the same on every run.
 */
export function startLevels(graph: DependencyGraph): string[][] | { cycle: string[] } {
  const remaining = new Map(
    [...graph].map(([name, deps]) => [name, new Set(deps.filter((d) => graph.has(d)))]),
  );
  const levels: string[][] = [];
  while (remaining.size > 0) {
    const ready = [...remaining]
      .filter(([, deps]) => deps.size === 0)
      .map(([name]) => name)
      .sort();
    if (ready.length === 0) return { cycle: findCycle(remaining) };
    for (const name of ready) remaining.delete(name);
    for (const deps of remaining.values()) for (const name of ready) deps.delete(name);
    levels.push(ready);
  }
  return levels;
}

/** A cycle as a closed walk, `[db, api, db]`, starting from its alphabetically first service. */
function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  for (const start of [...graph.keys()].sort()) {
    const walk = [start];
    let current = start;
    // Every node left here has a dependency that is also left, so the walk must revisit a node.
    for (;;) {
      current = [...graph.get(current)!].sort()[0]!;
      const seen = walk.indexOf(current);
      if (seen !== -1) {
        const cycle = walk.slice(seen);
        const first = cycle.indexOf([...cycle].sort()[0]!);
        const rotated = [...cycle.slice(first), ...cycle.slice(0, first)];
        return [...rotated, rotated[0]!];
      }
      walk.push(current);
    }
  }
  return [];
}

/** Services in the order apply starts them. */
export function startOrder(graph: DependencyGraph): string[] {
  const levels = startLevels(graph);
  return Array.isArray(levels) ? levels.flat() : [...graph.keys()].sort();
}
