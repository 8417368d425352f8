// grpc.health.v1 serving status for one node, per service ("" = the whole
// node). Everything starts NOT_SERVING; the node flips to SERVING once its
// database is ready and back to NOT_SERVING for good when it shuts down.
// `impl()` is a plain connect ServiceImpl of the generated Health service, so
// both transports serve it like any other service (and Kubernetes probes,
// grpc_health_probe, grpcurl and load balancers can read it).
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../../gen/health/v1/health_pb.js";

export { ServingStatus };

/** The name the standard uses for the node as a whole. */
export const OVERALL = "";

export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly waiters = new Set<() => void>();
  private version = 0;
  private terminal = false;

  /** `services` are registered NOT_SERVING (the overall "" always is). */
  constructor(services: Iterable<string> = []) {
    this.statuses.set(OVERALL, ServingStatus.NOT_SERVING);
    for (const s of services) this.register(s);
  }

  /** Make a service known (NOT_SERVING) so Check answers for it; no-op if known. */
  register(service: string): void {
    if (!this.statuses.has(service)) {
      this.statuses.set(service, ServingStatus.NOT_SERVING);
      this.changed();
    }
  }

  /** SERVING (`serving` true) or NOT_SERVING; registers the service if unknown. Ignored after `enterTerminalState`. */
  setServing(service: string = OVERALL, serving = true): void {
    this.setStatus(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  }

  /** Shorthand: every known service (and the node) SERVING. */
  setAllServing(): void {
    for (const s of [...this.statuses.keys()]) this.setServing(s, true);
  }

  setStatus(service: string, status: ServingStatus): void {
    if (this.terminal) return;
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.changed();
  }

  /** Every service NOT_SERVING, permanently (shutdown). Idempotent. */
  enterTerminalState(): void {
    if (this.terminal) return;
    for (const s of [...this.statuses.keys()]) this.setStatus(s, ServingStatus.NOT_SERVING);
    this.terminal = true;
  }

  get isTerminal(): boolean {
    return this.terminal;
  }

  /** The status of a service, or undefined when it is unknown. */
  get(service: string = OVERALL): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  snapshot(): ReadonlyMap<string, ServingStatus> {
    return new Map(this.statuses);
  }

  /** Resolves at the next change after `seen`, or at once if one happened; also on abort. */
  private waitForChange(seen: number, signal: AbortSignal): Promise<void> {
    if (this.version !== seen || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  private changed(): void {
    this.version++;
    for (const w of [...this.waiters]) w();
  }

  check(req: Pick<HealthCheckRequest, "service">): HealthCheckResponse {
    const status = this.statuses.get(req.service);
    if (status === undefined) throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
    return create(HealthCheckResponseSchema, { status });
  }

  /**
   * The current status at once (SERVICE_UNKNOWN for an unknown service, the
   * call stays open), then each change, until the call's signal aborts.
   * Intermediate flips that happen while the client is slow are coalesced:
   * only the latest status matters.
   */
  async *watch(req: Pick<HealthCheckRequest, "service">, signal: AbortSignal): AsyncGenerator<HealthCheckResponse> {
    let last: ServingStatus | undefined;
    for (;;) {
      const seen = this.version;
      const status = this.statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        yield create(HealthCheckResponseSchema, { status });
        continue;
      }
      // Checked after sending the latest status, so a watcher sees the final
      // NOT_SERVING of a shutdown before its stream is ended.
      if (signal.aborted) return;
      await this.waitForChange(seen, signal);
    }
  }

  /** The Health service implementation over this state. */
  impl(): ServiceImpl<typeof Health> {
    return {
      check: (req) => this.check(req),
      watch: (req, ctx: HandlerContext) => this.watch(req, ctx.signal),
      list: () => ({
        statuses: Object.fromEntries([...this.statuses].map(([name, status]) => [name, { status }])),
      }),
    };
  }
}

export { Health as HealthService };
