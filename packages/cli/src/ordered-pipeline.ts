/**
 * Run `work` over items with at most `concurrency` in flight, and hand results to `sink` strictly in
 * item order — parallel work, deterministic output.
 */
export async function orderedPipeline<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  sink: (result: R, index: number) => Promise<void>,
): Promise<void> {
  const pending = new Map<number, Promise<R>>();
  let next = 0;
  const launch = () => {
    while (next < items.length && pending.size < concurrency) {
      const i = next++;
      const p = work(items[i], i);
      p.catch(() => {}); // observed below, in order
      pending.set(i, p);
    }
  };
  launch();
  for (let i = 0; i < items.length; i++) {
    const result = await pending.get(i)!;
    pending.delete(i);
    launch();
    await sink(result, i);
  }
}
