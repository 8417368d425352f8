// How PostgreSQL runs a statement, for tests that pin a plan down: the nodes
// of an EXPLAIN (FORMAT JSON) plan, and the plans of the statements a
// function runs inside (auto_explain, reported to the session as notices).
import type pg from "pg";

export interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

export interface StatementPlan {
  "Query Text": string;
  Plan: PlanNode;
}

/** A plan's nodes, depth first. */
export const planNodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(planNodes)];

/**
 * Runs `work` in a transaction of `db` and returns the plan of every
 * statement it ran, nested ones included. The transaction commits if
 * `commit` and `work` succeeded, else it rolls back.
 */
export async function statementPlans(db: pg.Client, work: () => Promise<void>, opts: { commit: boolean }): Promise<StatementPlan[]> {
  const plans: StatementPlan[] = [];
  const onNotice = (n: { message?: string }) => {
    const json = n.message?.replace(/^duration: [\d.]+ ms\s+plan:\s*/, "");
    if (json?.startsWith("{")) plans.push(JSON.parse(json) as StatementPlan);
  };
  db.on("notice", onNotice);
  await db.query("BEGIN");
  let done = false;
  try {
    await db.query("LOAD 'auto_explain'");
    await db.query("SET LOCAL auto_explain.log_min_duration = 0");
    await db.query("SET LOCAL auto_explain.log_nested_statements = on");
    await db.query("SET LOCAL auto_explain.log_format = 'json'");
    await db.query("SET LOCAL client_min_messages = log");
    await work();
    if (opts.commit) {
      await db.query("COMMIT");
      done = true;
    }
  } finally {
    if (!done) await db.query("ROLLBACK");
    db.off("notice", onNotice);
  }
  return plans;
}
