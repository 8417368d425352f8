// An incremental CSV parser (RFC 4180): chunks in, complete records out, so a
// file of any size streams through in constant memory. Quoted fields may hold
// commas, doubled quotes and line breaks; LF and CRLF both end a record. Each
// record carries the physical line it starts on, for reports. Pure.

export interface CsvRecord {
  /** 1-based line of the file where the record starts. */
  line: number;
  cells: string[];
}

export class CsvError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

const QUOTE = 34;
const COMMA = 44;
const LF = 10;
const CR = 13;

export class CsvParser {
  private cells: string[] = [];
  private field = "";
  /** Inside a quoted field. */
  private quoted = false;
  /** Just saw a quote inside a quoted field: an escaped quote or the closing one. */
  private quoteSeen = false;
  /** The current field was quoted (text after its closing quote is kept verbatim). */
  private fieldWasQuoted = false;
  /** The record has content (a blank line is no record). */
  private started = false;
  private line = 1;
  private recordLine = 1;
  private first = true;

  /** Feeds a chunk; returns the records it completed. */
  push(chunk: string): CsvRecord[] {
    const out: CsvRecord[] = [];
    let text = chunk;
    if (this.first && text.length > 0) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let i = 0;
    const n = text.length;
    while (i < n) {
      if (this.quoted) {
        if (this.quoteSeen) {
          this.quoteSeen = false;
          if (text.charCodeAt(i) === QUOTE) {
            this.field += '"';
            i++;
            continue;
          }
          this.quoted = false; // that quote closed the field; this char is handled below
          continue;
        }
        const q = text.indexOf('"', i);
        const end = q === -1 ? n : q;
        this.countLines(text, i, end);
        this.field += text.slice(i, end);
        if (q === -1) break;
        this.quoteSeen = true;
        i = q + 1;
        continue;
      }
      const c = text.charCodeAt(i);
      if (c === COMMA) {
        this.endField();
        this.started = true;
        i++;
      } else if (c === LF) {
        this.endRecord(out);
        this.line++;
        this.recordLine = this.line;
        i++;
      } else if (c === CR) {
        i++; // a CR is part of CRLF or stray; either way not field content
      } else if (c === QUOTE && this.field === "" && !this.fieldWasQuoted) {
        this.quoted = true;
        this.fieldWasQuoted = true;
        this.started = true;
        i++;
      } else {
        // Fast path: the run of plain characters up to the next delimiter.
        let j = i + 1;
        while (j < n) {
          const d = text.charCodeAt(j);
          if (d === COMMA || d === LF || d === CR) break;
          j++;
        }
        this.field += text.slice(i, j);
        this.started = true;
        i = j;
      }
    }
    return out;
  }

  /** Ends the input; returns the last record, if any. Throws CsvError on an unclosed quote. */
  end(): CsvRecord[] {
    if (this.quoted && !this.quoteSeen) throw new CsvError(this.recordLine, `a quoted field opened on line ${this.recordLine} is never closed`);
    this.quoted = false;
    this.quoteSeen = false;
    const out: CsvRecord[] = [];
    this.endRecord(out);
    return out;
  }

  private countLines(text: string, from: number, to: number): void {
    for (let k = text.indexOf("\n", from); k !== -1 && k < to; k = text.indexOf("\n", k + 1)) this.line++;
  }

  private endField(): void {
    this.cells.push(this.field);
    this.field = "";
    this.fieldWasQuoted = false;
  }

  private endRecord(out: CsvRecord[]): void {
    if (this.started || this.field !== "" || this.fieldWasQuoted) {
      this.endField();
      out.push({ line: this.recordLine, cells: this.cells });
    }
    this.cells = [];
    this.field = "";
    this.fieldWasQuoted = false;
    this.started = false;
  }
}
