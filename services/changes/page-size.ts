// How many change rows to read at once. Rows range from a few hundred bytes
// to hundreds of kilobytes (large notes, JSON fields), so a fixed row count
// either wastes round trips or holds too much in memory: the page size
// follows the size of recent rows to read about a target number of JSON
// characters. A page costs several times its characters while it is in
// memory (the driver's text, UTF-16 strings for CJK text, parsed copies,
// encoded events), so the target is kept at one million: pages of small rows
// still reach the 1,000-row cap, and a page of 24 KB notes holds ~128 rows
// instead of the ~500 that overran a 64 MB heap in the slow-consumer test.

export class PageSizer {
  private rows: number;

  constructor(
    private readonly targetChars = 1024 * 1024,
    private readonly minRows = 8,
    private readonly maxRows = 1000,
    initialRows = 128,
  ) {
    this.rows = initialRows;
  }

  get next(): number {
    return this.rows;
  }

  /** A page of `rows` rows held `chars` characters of JSON. */
  observe(rows: number, chars: number): void {
    if (rows === 0) return;
    const perRow = Math.max(1, chars / rows);
    this.rows = Math.max(this.minRows, Math.min(this.maxRows, Math.floor(this.targetChars / perRow)));
  }
}
