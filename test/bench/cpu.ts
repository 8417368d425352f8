// CPU time of processes on Linux, from /proc, so a benchmark can say where
// the time went: client, server, or database.
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface ProcStat {
  ppid: number;
  /** utime + stime, and the waited-for children's cutime + cstime, in ticks. */
  own: number;
  children: number;
}

function procStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces; fields resume after its closing parenthesis.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
  } catch {
    return null;
  }
}

/** CPU milliseconds used so far by `pid`, its live descendants and the descendants it has reaped. */
export function treeCpuMs(pid: number): number {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = procStat(Number(entry));
    if (s) stats.set(Number(entry), s);
  }
  let ticks = 0;
  const visit = (p: number) => {
    const s = stats.get(p);
    if (!s) return;
    ticks += s.own + s.children;
    for (const [child, cs] of stats) if (cs.ppid === p) visit(child);
  };
  visit(pid);
  return (ticks * 1000) / TICKS_PER_SECOND;
}

