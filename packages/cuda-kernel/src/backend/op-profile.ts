import { CudaEvent, type CudaStream } from "../runtime/stream.js";

/** One op's accumulated GPU time. */
export interface OpTime {
  readonly op: string;
  readonly calls: number;
  readonly milliseconds: number;
}

/**
 * GPU time per op: events around each op, waited for at once (so ops no longer overlap each other or
 * the host). Shows where a step's time goes; the totals are those of a serialised step.
 */
export class OpProfile implements Disposable {
  private readonly start = new CudaEvent();
  private readonly end = new CudaEvent();
  private readonly totals = new Map<string, { calls: number; ms: number }>();

  constructor(private readonly defaultStream: CudaStream) {}

  /** Time `fn` under `op`; `counts(result)` false: it did nothing (a kernel that declined), not recorded. */
  time<T>(op: string, fn: () => T, stream: CudaStream = this.defaultStream, counts: (result: T) => boolean = () => true): T {
    this.defaultStream.synchronize();
    this.start.record(stream);
    const result = fn();
    this.end.record(stream);
    this.end.synchronize();
    if (!counts(result)) return result;
    const t = this.totals.get(op) ?? { calls: 0, ms: 0 };
    t.calls++;
    t.ms += this.end.elapsedSince(this.start);
    this.totals.set(op, t);
    return result;
  }

  /** Accumulated times, largest first. */
  results(): OpTime[] {
    return [...this.totals].map(([op, t]) => ({ op, calls: t.calls, milliseconds: t.ms })).sort((a, b) => b.milliseconds - a.milliseconds);
  }

  reset(): void {
    this.totals.clear();
  }

  dispose(): void {
    this.start.dispose();
    this.end.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
