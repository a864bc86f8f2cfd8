// Errors that reach a user name the cause and the fix. `AzoteError` carries both so the CLI can print one line.

export class AzoteError extends Error {
  readonly code: string;
  readonly fix: string | undefined;

  constructor(code: string, message: string, fix?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AzoteError';
    this.code = code;
    this.fix = fix;
  }

  /** One line for a terminal: "cause (fix)". */
  oneLine(): string {
    return this.fix ? `${this.message}: ${this.fix}` : this.message;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof AzoteError) return err.oneLine();
  if (err instanceof Error) return err.message;
  return String(err);
}
