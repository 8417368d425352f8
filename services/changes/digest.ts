// Replica digests, pure and shared by the server and the TypeScript client
// (clients/typescript): a record belongs to bucket
//   uint32_be(sha256(id)[0:4]) mod bucketCount
// and a bucket's hash is the XOR of uint64_be(sha256(id "\n" version)[0:8])
// over its records. XOR makes the hash independent of order, so either side
// can fold records in as it reads them. Ids are unique per collection, so no
// two entries cancel out.
import { createHash } from "node:crypto";

export const DEFAULT_BUCKETS = 256;
export const MAX_BUCKETS = 65_536;

export interface Bucket {
  index: number;
  count: number;
  hash: bigint;
}

export function bucketOf(id: string, bucketCount: number): number {
  return createHash("sha256").update(id).digest().readUInt32BE(0) % bucketCount;
}

export function entryHash(id: string, version: number | bigint): bigint {
  return createHash("sha256").update(`${id}\n${version}`).digest().readBigUInt64BE(0);
}

/** Accumulates (id, version) pairs into buckets. */
export class DigestBuilder {
  readonly buckets: Bucket[];
  count = 0;

  constructor(readonly bucketCount: number) {
    this.buckets = Array.from({ length: bucketCount }, (_, index) => ({ index, count: 0, hash: 0n }));
  }

  add(id: string, version: number | bigint): void {
    const b = this.buckets[bucketOf(id, this.bucketCount)]!;
    b.count++;
    b.hash ^= entryHash(id, version);
    this.count++;
  }
}

/** Indexes of the buckets that differ between two digests of the same bucket count. */
export function differingBuckets(a: readonly Bucket[], b: readonly Bucket[]): number[] {
  const out: number[] = [];
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y || x.count !== y.count || x.hash !== y.hash) out.push(i);
  }
  return out;
}
