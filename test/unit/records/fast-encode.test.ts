// The hand-rolled WriteRecords response encoder must produce exactly the
// message the reflective path builds, for any result the pipeline can return.
import { create, equals, fromBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WriteRecordsResponseSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import { encodeResult } from "../../../services/records/convert.js";
import { encodeWriteRecordsResponse } from "../../../services/records/fast-encode.js";
import type { FieldOutcome, MutationResult } from "../../../services/records/model.js";

const text = fc.string({ maxLength: 12, unit: "grapheme" });
const clock = fc.record({
  version: fc.nat({ max: 2 ** 40 }),
  hlc: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  source: text,
  actor: text,
  device: text,
});
const outcome: fc.Arbitrary<FieldOutcome> = fc.record(
  {
    field: text,
    status: fc.constantFrom("applied", "superseded", "kept", "queued_for_review", "unchanged" as const),
    policy: text,
    winner: clock,
    ticketId: text,
  },
  { requiredKeys: ["field", "status"] },
);
const result: fc.Arbitrary<MutationResult> = fc.record({
  collection: text,
  id: text,
  version: fc.nat({ max: 2 ** 48 }),
  created: fc.boolean(),
  replayed: fc.boolean(),
  deleted: fc.boolean(),
  fields: fc.array(outcome, { maxLength: 4 }),
  cursor: text,
});

describe("encodeWriteRecordsResponse", () => {
  it("decodes to the same message as the reflective encoding, for any results", () => {
    fc.assert(
      fc.property(fc.array(result, { maxLength: 5 }), (results) => {
        const fast = fromBinary(WriteRecordsResponseSchema, encodeWriteRecordsResponse(results));
        const reflective = create(WriteRecordsResponseSchema, { results: results.map(encodeResult) });
        expect(equals(WriteRecordsResponseSchema, fast, reflective)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("encodes an empty batch as an empty message", () => {
    expect(encodeWriteRecordsResponse([])).toHaveLength(0);
  });
});
