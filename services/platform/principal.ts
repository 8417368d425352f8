// The authenticated caller of a request, as handlers see it. The auth hook
// (run by the transport wrapper before every call) puts it in the request's
// context values; handlers read it with `principalOf`.
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { DEFAULT_TENANT } from "../records/model.js";

export interface Principal {
  subject: string;
  tenant: string;
  roles: string[];
  /** Region, department, device class, ... as granted by the token. */
  attributes: Record<string, string | string[]>;
  /** When the credential stops being valid (a token's exp, ms since epoch); calls that outlive it (streams) end then. */
  expiresAtMs?: number;
}

export const ANONYMOUS: Principal = { subject: "anonymous", tenant: DEFAULT_TENANT, roles: [], attributes: {} };

export const principalKey = createContextKey<Principal>(ANONYMOUS, { description: "deltamesh principal" });

export function principalOf(ctx: HandlerContext): Principal {
  return ctx.values.get(principalKey);
}
