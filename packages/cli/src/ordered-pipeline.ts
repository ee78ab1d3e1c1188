/** A bound on the bytes of work in flight: an item starts only while the sum of `cost` stays within `bytes`. */
export interface MemoryBudget<T> {
  readonly bytes: number;
  readonly cost: (item: T) => number;
}

/**
 * Run `work` over items with at most `concurrency` in flight (and, with a budget, at most `budget.bytes`
 * of estimated memory; one item always runs even if it alone exceeds it), and hand results to `sink`
 * strictly in item order — parallel work, deterministic output. An item's memory counts until its sink
 * has finished.
 */
export async function orderedPipeline<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  sink: (result: R, index: number) => Promise<void>,
  budget?: MemoryBudget<T>,
): Promise<void> {
  const pending = new Map<number, Promise<R>>();
  let next = 0;
  let inFlightBytes = 0;
  const costs = items.map((item) => budget?.cost(item) ?? 0);
  const launch = () => {
    while (next < items.length && pending.size < concurrency) {
      if (budget && pending.size > 0 && inFlightBytes + costs[next] > budget.bytes) break;
      const i = next++;
      inFlightBytes += costs[i];
      const p = work(items[i], i);
      p.catch(() => {}); // observed below, in order
      pending.set(i, p);
    }
  };
  launch();
  for (let i = 0; i < items.length; i++) {
    const result = await pending.get(i)!;
    await sink(result, i);
    pending.delete(i);
    inFlightBytes -= costs[i];
    launch();
  }
}

/** How many of the largest items fit the budget together (what the budget allows in flight at worst). */
export function itemsWithinBudget<T>(items: readonly T[], budget: MemoryBudget<T>): number {
  const largest = Math.max(0, ...items.map(budget.cost));
  return largest > 0 ? Math.max(1, Math.floor(budget.bytes / largest)) : Infinity;
}
