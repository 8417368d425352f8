import { describe, expect, it } from "vitest";
import { candidateOf, electedLeader } from "../../../services/cluster/election.js";
import type { IKeyValue } from "etcd3";

describe("electedLeader", () => {
  it("is nobody without candidates", () => {
    expect(electedLeader([])).toBeNull();
  });

  it("is the candidate with the lowest create revision, whatever the order", () => {
    const cs = [
      { key: "b", nodeId: "n2", createRevision: 12n },
      { key: "a", nodeId: "n1", createRevision: 9n },
      { key: "c", nodeId: "n3", createRevision: 30n },
    ];
    expect(electedLeader(cs)).toEqual({ key: "a", nodeId: "n1", term: 9n });
    expect(electedLeader([...cs].reverse())).toEqual({ key: "a", nodeId: "n1", term: 9n });
  });

  it("gives every successor a higher term: a later candidate can only lead once earlier ones are gone", () => {
    const first = { key: "a", nodeId: "n1", createRevision: 5n };
    const second = { key: "b", nodeId: "n2", createRevision: 7n };
    const late = { key: "c", nodeId: "n1", createRevision: 40n };
    const t1 = electedLeader([first, second])!.term;
    const t2 = electedLeader([second, late])!.term;
    const t3 = electedLeader([late])!.term;
    expect(t1 < t2 && t2 < t3).toBe(true);
  });
});

describe("candidateOf", () => {
  it("reads a candidate key relative to the election prefix", () => {
    const kv = { key: Buffer.from("/p/election/leader/7587"), value: Buffer.from("node-2"), create_revision: "41" } as unknown as IKeyValue;
    expect(candidateOf(kv, "/p/election/leader/")).toEqual({ key: "7587", nodeId: "node-2", createRevision: 41n });
  });
});
