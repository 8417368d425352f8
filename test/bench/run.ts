// `npm run bench -- <name>`: runs one benchmark and prints its figures.
import { importBench } from "./import.js";
import { streamBench } from "./stream.js";
import { telemetryBench } from "./telemetry.js";
import { writesBench } from "./writes.js";

export interface BenchContext {
  /** A result line (stdout). */
  print(line: string): void;
  /** Progress and server output (stderr). */
  log(line: string): void;
}

const BENCHES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  writes: writesBench,
  import: importBench,
  stream: streamBench,
  telemetry: telemetryBench,
};

const name = process.argv[2];
const bench = name ? BENCHES[name] : undefined;
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join("|")}>\n`);
  process.exit(2);
}
const ctx: BenchContext = {
  print: (line) => process.stdout.write(line + "\n"),
  log: (line) => process.stderr.write(line + "\n"),
};
await bench(ctx);
process.exit(0);
