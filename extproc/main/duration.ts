/** Parses `90s`, `15m`, `1h`, `7d` (or plain seconds) into seconds; undefined when malformed. */
export function parseDurationSeconds(text: string): number | undefined {
  const m = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const mult = unit === 's' ? 1 : unit === 'm' ? 60 : unit === 'h' ? 3600 : 86_400;
  const s = n * mult;
  return s > 0 && Number.isSafeInteger(s) ? s : undefined;
}
