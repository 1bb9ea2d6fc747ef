/**
 * Exact decimal arithmetic for money: a BigInt scaled by 10^12. Floats never touch a price or a
 * cost, so `0.1 + 0.2` is `0.3` and sums in the aggregator match PostgreSQL `numeric` exactly.
 */

/** Fractional digits kept; 12 covers per-character prices of a millionth of a cent. */
export const DECIMAL_SCALE = 12;
const FACTOR = 10n ** BigInt(DECIMAL_SCALE);
const DECIMAL_RE = /^(-)?(\d+)(?:\.(\d+))?$/;

/** An immutable fixed-point decimal. */
export class Decimal {
  /** The value × 10^12. */
  readonly units: bigint;

  private constructor(units: bigint) {
    this.units = units;
  }

  static readonly ZERO = new Decimal(0n);

  /**
   * Parses a plain decimal string (`"0.0195"`, `"-3"`); digits beyond 12 places are rounded half up.
   * @example Decimal.parse('0.0195').toString() // '0.0195'
   */
  static parse(text: string): Decimal {
    const m = DECIMAL_RE.exec(text.trim());
    if (!m) throw new RangeError(`not a decimal: ${JSON.stringify(text)}`);
    const [, sign, int = '0', frac = ''] = m;
    const kept = frac.slice(0, DECIMAL_SCALE).padEnd(DECIMAL_SCALE, '0');
    let units = BigInt(int) * FACTOR + BigInt(kept);
    if (frac.length > DECIMAL_SCALE && Number(frac[DECIMAL_SCALE]) >= 5) units += 1n;
    return new Decimal(sign ? -units : units);
  }

  /** An integer (bigint or safe integer number). */
  static fromInteger(n: bigint | number): Decimal {
    if (typeof n === 'number' && !Number.isSafeInteger(n)) throw new RangeError(`not a safe integer: ${n}`);
    return new Decimal(BigInt(n) * FACTOR);
  }

  add(other: Decimal): Decimal {
    return new Decimal(this.units + other.units);
  }

  /** Product, rounded half away from zero to 12 places. */
  mul(other: Decimal): Decimal {
    return new Decimal(divRound(this.units * other.units, FACTOR));
  }

  /** Quotient by a positive integer, rounded half away from zero to 12 places. */
  divInt(n: bigint | number): Decimal {
    const d = BigInt(n);
    if (d <= 0n) throw new RangeError('divisor must be positive');
    return new Decimal(divRound(this.units, d));
  }

  isZero(): boolean {
    return this.units === 0n;
  }

  /** Canonical text without trailing zeros: `"0.000195"`, `"12"`, `"0"`. */
  toString(): string {
    const neg = this.units < 0n;
    const abs = neg ? -this.units : this.units;
    const int = abs / FACTOR;
    const frac = (abs % FACTOR).toString().padStart(DECIMAL_SCALE, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
  }
}

function divRound(n: bigint, d: bigint): bigint {
  const q = n / d;
  const r = n % d;
  const twice = (r < 0n ? -r : r) * 2n;
  if (twice >= d) return n < 0n ? q - 1n : q + 1n;
  return q;
}

/** Sums decimal strings exactly (used for roll-ups computed in memory). */
export function sumDecimals(values: Iterable<string>): string {
  let total = Decimal.ZERO;
  for (const v of values) total = total.add(Decimal.parse(v));
  return total.toString();
}
