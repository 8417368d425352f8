// The write pipeline and this node's streams (CommitListener): a writer's
// acknowledgement never overtakes its change on the node's streams. The
// changes are handed over first; the acknowledgement follows in a later turn
// of the event loop, after the streams' own writes of that turn, and when the
// streams cannot place the changes yet it waits for them, but only so long.
import { describe, expect, it } from "vitest";
import { WritePipeline, type CommitListener, type WriteRequest } from "../../../services/records/write-pipeline.js";
import type { LogChange } from "../../../services/store/change-reader.js";
import { usePipelineStore } from "../../support/pipeline-store.js";

const db = usePipelineStore();

let n = 0;
const request = (): WriteRequest => {
  const id = `listener-${++n}`;
  return {
    tenant: "default",
    actor: "test",
    mutations: [{ collection: "customers", target: { id }, set: { name: `Customer ${id}`, region: "east_china" }, clear: [], baseVersion: 0, clientMutationId: "", source: "crm", device: "", delete: false }],
  };
};

/** A listener that records what happened in which order, answering `committed` with `answer`. */
function recordingListener(answer: () => Promise<void> | undefined) {
  const events: string[] = [];
  const handed: LogChange[] = [];
  const listener: CommitListener = {
    listening: () => true,
    committed(changes) {
      handed.push(...changes);
      events.push("handed");
      // What a stream does with the change in the same turn (microtasks), and in the next turn.
      void Promise.resolve().then(() => events.push("stream wrote"));
      setImmediate(() => events.push("next turn"));
      return answer();
    },
  };
  return { listener, events, handed };
}

describe("a write's acknowledgement and this node's streams", () => {
  it("is given after the changes were handed to the streams, in a later turn of the event loop", async () => {
    const { listener, events, handed } = recordingListener(() => undefined);
    const pipeline = new WritePipeline(db.store, () => db.schemas, { commits: listener });
    const [result] = await pipeline.write(request());
    events.push("acknowledged");
    expect(events).toEqual(["handed", "stream wrote", "next turn", "acknowledged"]);
    expect(handed.map((c) => [c.recordId, c.newVersion])).toEqual([[result!.id, 1]]);
  });

  it("waits for the streams to place changes they could not place at once", async () => {
    let place!: () => void;
    let handed!: () => void;
    const wasHanded = new Promise<void>((resolve) => (handed = resolve));
    const { listener, events } = recordingListener(() => {
      handed();
      return new Promise<void>((resolve) => (place = resolve));
    });
    const pipeline = new WritePipeline(db.store, () => db.schemas, { commits: listener, maxAckWaitMs: 60_000 });
    const acknowledged = pipeline.write(request()).then(() => events.push("acknowledged"));
    await wasHanded;
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual(["handed", "stream wrote", "next turn"]);
    place();
    await acknowledged;
    expect(events.at(-1)).toBe("acknowledged");
  });

  it("acknowledges anyway after a short bound when the streams never place them (a tailer that cannot read)", async () => {
    const { listener } = recordingListener(() => new Promise<void>(() => undefined));
    const pipeline = new WritePipeline(db.store, () => db.schemas, { commits: listener, maxAckWaitMs: 200 });
    const started = performance.now();
    const [result] = await pipeline.write(request());
    expect(result!.version).toBe(1);
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(195);
    expect(waited).toBeLessThan(5_000);
  });

  it("changes nothing for writers when no stream listens", async () => {
    const events: string[] = [];
    const pipeline = new WritePipeline(db.store, () => db.schemas, {
      commits: {
        listening: () => false,
        committed: () => {
          events.push("handed");
          return undefined;
        },
      },
    });
    const [result] = await pipeline.write(request());
    expect(result!.created).toBe(true);
    expect(events).toEqual([]);
  });
});
