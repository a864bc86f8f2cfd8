// Summaries of benchmark samples and the plain-text tables that show them.

export interface Summary {
  readonly runs: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** Median (mean of the two middle samples for an even count), min and max. Throws on no samples. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) throw new Error('summarize: no samples');
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { runs: s.length, median, min: s[0]!, max: s[s.length - 1]! };
}

/** a / b, or undefined when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

/** One row of a metric: a VMM (or variant) and its samples. */
export interface Row {
  readonly name: string;
  readonly samples: number[];
}

/** A measured quantity and its rows; every row's median is divided by the baseline row's (the ratio column). */
export interface Metric {
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly rows: Row[];
  /** Name of the row the others are compared with (QEMU); none for no ratio column. */
  readonly baseline?: string;
  readonly notes?: string[];
}

export interface MetricResult {
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly baseline: string | undefined;
  /** Each row's summary; `ratio` = its median / the baseline's median. */
  readonly rows: Array<Summary & { name: string; samples: number[]; ratio: number | undefined }>;
}

const round = (v: number, digits: number): number => Number(v.toFixed(digits));

/** The metric as a text table (runs, median, min, max and ratio per row) and as plain data. */
export function renderMetric(m: Metric, digits = 1): { text: string; result: MetricResult } {
  const summaries = m.rows.filter((r) => r.samples.length > 0).map((r) => ({ name: r.name, ...summarize(r.samples) }));
  const base = summaries.find((r) => r.name === m.baseline)?.median;
  const rows = summaries.map((r) => ({
    ...r,
    samples: m.rows.find((x) => x.name === r.name)!.samples.map((v) => round(v, 3)),
    ratio: r.name === m.baseline ? undefined : ratio(r.median, base),
  }));
  const nameWidth = Math.max(24, ...rows.map((r) => r.name.length));
  const col = (s: string): string => s.padStart(10);
  const rcol = (s: string): string => s.padStart(12);
  const ratioHead = m.baseline ? rcol('ratio') : '';
  const lines = [`== ${m.title} [${m.unit}]`];
  lines.push(`  ${'VMM'.padEnd(nameWidth)} ${'runs'.padStart(5)}${col('median')}${col('min')}${col('max')}${ratioHead}`);
  for (const r of rows) {
    const rc = m.baseline ? rcol(r.ratio === undefined ? (r.name === m.baseline ? '(base)' : 'n/a') : `${r.ratio < 0.01 ? r.ratio.toPrecision(2) : r.ratio.toFixed(2)}x`) : '';
    lines.push(`  ${r.name.padEnd(nameWidth)} ${String(r.runs).padStart(5)}${col(r.median.toFixed(digits))}`
      + `${col(r.min.toFixed(digits))}${col(r.max.toFixed(digits))}${rc}`);
  }
  if (m.baseline) lines.push(`  (ratio: the row's median / the median of "${m.baseline}")`);
  for (const n of m.notes ?? []) lines.push(`  note: ${n}`);
  return { text: lines.join('\n'), result: { id: m.id, title: m.title, unit: m.unit, baseline: m.baseline, rows } };
}
