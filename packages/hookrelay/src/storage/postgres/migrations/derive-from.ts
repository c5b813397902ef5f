/**
 * A migration's SQL made from an earlier migration's text by exact replacements. Released
 * migrations never change, so a later one that alters a long function says only what it alters;
 * each `from` must occur exactly once, or building the migration fails (never a silent no-op).
 */
export function deriveFrom(base: string, replacements: readonly (readonly [from: string, to: string])[], label: string): string {
  return replacements.reduce((text, [from, to]) => {
    const at = text.indexOf(from);
    if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`${label}: expected exactly one occurrence of ${JSON.stringify(from.slice(0, 60))}`);
    return text.slice(0, at) + to + text.slice(at + from.length);
  }, base);
}
