// How many change rows to read at once. Rows range from a few hundred bytes
// to hundreds of kilobytes (large notes, JSON fields), so a fixed row count
// either wastes round trips or holds too much in memory: the page size
// follows the size of recent rows to read about a target number of bytes.

export class PageSizer {
  private rows: number;

  constructor(
    private readonly targetBytes = 4 * 1024 * 1024,
    private readonly minRows = 8,
    private readonly maxRows = 1000,
    initialRows = 128,
  ) {
    this.rows = initialRows;
  }

  get next(): number {
    return this.rows;
  }

  /** A page of `rows` rows held about `bytes` bytes. */
  observe(rows: number, bytes: number): void {
    if (rows === 0) return;
    const perRow = Math.max(1, bytes / rows);
    this.rows = Math.max(this.minRows, Math.min(this.maxRows, Math.floor(this.targetBytes / perRow)));
  }
}
