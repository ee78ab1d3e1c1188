/**
 * Shared by the GPU kernel benchmarks (gemv-kernels, gemm-kernels): median kernel time by CUDA events,
 * and the deterministic activations they multiply.
 */
import { CudaEvent, type CudaStream, DeviceBuffer } from "@df11/cuda-kernel";

/** Median GPU time of a piece of queued work on one stream, measured with a pair of CUDA events. */
export class GpuTimer implements Disposable {
  private readonly start = new CudaEvent();
  private readonly end = new CudaEvent();

  constructor(
    private readonly stream: CudaStream,
    /** Timed runs per measurement (after 3 warm-ups). */
    private readonly iterations: number,
  ) {}

  /** Median milliseconds of `fn` (which queues work on the stream) over the iterations, events around each. */
  median(fn: () => void): number {
    for (let i = 0; i < 3; i++) fn();
    const ms: number[] = [];
    for (let i = 0; i < this.iterations; i++) {
      this.start.record(this.stream);
      fn();
      this.end.record(this.stream);
      this.end.synchronize();
      ms.push(this.end.elapsedSince(this.start));
    }
    return ms.sort((a, b) => a - b)[ms.length >> 1];
  }

  [Symbol.dispose](): void {
    this.start.dispose();
    this.end.dispose();
  }
}

/** float32 activations [rows, cols] on the device, the same values in every benchmark (sin(i · 12.9898) / 2). */
export function benchActivations(rows: number, cols: number): DeviceBuffer {
  const host = new Float32Array(rows * cols);
  for (let i = 0; i < host.length; i++) host[i] = Math.sin(i * 12.9898) * 0.5;
  return DeviceBuffer.from(host);
}
