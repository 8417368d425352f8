// Building a WHERE clause of optional filters with numbered parameters.

export interface Conditions {
  where: string[];
  params: unknown[];
  /** Adds `sql` with its one `?` bound to `value`. */
  add(sql: string, value: unknown): void;
}

/** Conditions starting with `tenant = $1`. */
export function tenantConditions(tenant: string): Conditions {
  const where = ["tenant = $1"];
  const params: unknown[] = [tenant];
  return {
    where,
    params,
    add(sql, value) {
      params.push(value);
      where.push(sql.replace("?", `$${params.length}`));
    },
  };
}
