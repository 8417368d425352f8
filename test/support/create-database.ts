// A new, empty database on a PostgreSQL server, for tests and benches that
// need tables of their own beside others on the same server.
import pg from "pg";

/** Creates database `name` through `adminUrl`; resolves with the URL of the new database. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
