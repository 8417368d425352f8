// The connect HandlerContext of a call served by grpc-js, built lazily.
//
// connect's createHandlerContext makes two AbortControllers (the deadline and
// the call), links them with listeners, copies the request headers and makes
// two empty response Headers for every call; on this machine that was about
// a fifth of a unary call's server CPU. Most unary handlers never read the
// signal or set a response header, so here each is made on first use, with
// the same behaviour as connect's: the signal is aborted at the deadline
// (DEADLINE_EXCEEDED), when the client cancels, at shutdown, and when the
// call ends; `timeoutMs()` counts down to the deadline.
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext } from "@connectrpc/connect";

export class CallContext implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Why the call ended, when it ended before anyone read the signal. */
  private endReason: { reason: unknown } | undefined;
  private request: Headers | undefined;
  private response: Headers | undefined;
  private trailer: Headers | undefined;

  constructor(
    readonly service: DescService,
    readonly method: DescMethod,
    readonly url: string,
    readonly values: ContextValues,
    /** Absolute deadline (ms since epoch), if the client set one. */
    private readonly deadlineMs: number | undefined,
    private readonly readRequestHeader: () => Headers,
  ) {}

  /** A method, not a per-call arrow: the context is built for every call. */
  timeoutMs(): number | undefined {
    return this.deadlineMs === undefined ? undefined : this.deadlineMs - Date.now();
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    const controller = new AbortController();
    this.controller = controller;
    if (this.endReason) {
      controller.abort(this.endReason.reason);
    } else if (this.deadlineMs !== undefined) {
      const left = this.deadlineMs - Date.now();
      if (left <= 0) controller.abort(deadlineExceeded());
      else this.timer = setTimeout(() => controller.abort(deadlineExceeded()), left);
    }
    return controller.signal;
  }

  get requestHeader(): Headers {
    return (this.request ??= this.readRequestHeader());
  }

  get responseHeader(): Headers {
    return (this.response ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.trailer ??= new Headers());
  }

  /** Response headers (trailers) a handler touched, without making empty ones. */
  responseHeaderIfUsed(): Headers | undefined {
    return this.response;
  }

  responseTrailerIfUsed(): Headers | undefined {
    return this.trailer;
  }

  /** Ends the call's signal (the first reason wins, as with AbortController). */
  abort(reason: unknown): void {
    clearTimeout(this.timer);
    if (this.controller) {
      if (!this.controller.signal.aborted) this.controller.abort(reason);
    } else {
      this.endReason ??= { reason };
    }
  }
}

const deadlineExceeded = () => new ConnectError("the operation timed out", Code.DeadlineExceeded);
