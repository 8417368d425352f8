// Hybrid logical clock: physical milliseconds in the high 48 bits, a logical
// counter in the low 16. Comparable as plain integers, close to wall time,
// and strictly increasing per node even when the wall clock stalls or steps back.

const LOGICAL_BITS = 16n;
const LOGICAL_MASK = (1n << LOGICAL_BITS) - 1n;

export function packHlc(physicalMs: number, logical = 0): bigint {
  return (BigInt(Math.max(0, Math.floor(physicalMs))) << LOGICAL_BITS) | (BigInt(logical) & LOGICAL_MASK);
}

export function hlcPhysicalMs(hlc: bigint): number {
  return Number(hlc >> LOGICAL_BITS);
}

export function hlcLogical(hlc: bigint): number {
  return Number(hlc & LOGICAL_MASK);
}

export class HybridClock {
  private last = 0n;

  constructor(private readonly wallMs: () => number = Date.now) {}

  /** A new timestamp, greater than every one this clock issued or observed. */
  now(): bigint {
    const wall = packHlc(this.wallMs());
    this.last = wall > this.last ? wall : this.last + 1n;
    return this.last;
  }

  /** Takes in a timestamp seen elsewhere, so later local ones order after it. */
  observe(remote: bigint): void {
    if (remote > this.last) this.last = remote;
  }

  /**
   * The clock of an edit made at `editTimeMs` on a device. The device's time is
   * trusted only up to `maxSkewMs` ahead of ours, so a phone whose clock runs a
   * year fast cannot win every last-writer-wins decision for a year. An edit
   * with no device time is stamped now.
   */
  editTime(editTimeMs: number | undefined, maxSkewMs: number): bigint {
    if (editTimeMs === undefined) return this.now();
    return packHlc(Math.min(editTimeMs, this.wallMs() + maxSkewMs));
  }
}
