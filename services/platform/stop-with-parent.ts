// Child processes that must not outlive this process: a database or server
// left running after its parent threw keeps its port, its data folder and
// its CPU (and skews the next benchmark's figures). Each is sent its signal
// when this process exits without having stopped it.
import type { ChildProcess } from "node:child_process";

const children = new Map<ChildProcess, NodeJS.Signals>();
let listening = false;

/** Sends `child` `signal` if this process exits while the child still runs. */
export function stopWithParent(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!listening) {
    listening = true;
    process.once("exit", () => {
      for (const [c, sig] of children) c.kill(sig);
    });
  }
  children.set(child, signal);
  child.once("exit", () => children.delete(child));
}
