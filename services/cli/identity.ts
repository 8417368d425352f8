// Who a CLI command calls as: a bearer token for a real node; the
// x-deltamesh-* headers only count on a node in development mode.

export interface IdentityFlags {
  token?: string;
  tenant?: string;
  as?: string;
  roles?: string;
  attributes?: string;
}

/** The request headers the flags ask for. */
export function identityHeaders(flags: IdentityFlags): Record<string, string> {
  const headers: Record<string, string> = {};
  if (flags.token) headers.authorization = `Bearer ${flags.token}`;
  if (flags.tenant) headers["x-deltamesh-tenant"] = flags.tenant;
  if (flags.as) headers["x-deltamesh-subject"] = flags.as;
  if (flags.roles) headers["x-deltamesh-roles"] = flags.roles;
  if (flags.attributes) headers["x-deltamesh-attributes"] = flags.attributes;
  return headers;
}
