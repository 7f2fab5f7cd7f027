// "Did you mean": the nearest known name to a misspelt one (edit distance,
// ignoring case), for unknown capabilities, constants, ops and flags.

/** Levenshtein distance, with an early exit once it exceeds `limit`. */
export function editDistance(a: string, b: string, limit = Infinity): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < best) best = v;
    }
    if (best > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length];
}

/** The known name closest to `name`, if one is close enough to be a likely typo. */
export function nearest(name: string, known: Iterable<string>): string | undefined {
  const lower = name.toLowerCase();
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const k of known) {
    const kl = k.toLowerCase();
    if (kl === lower) return k;
    // A known name that contains the typed one (or the reverse) is a strong hint.
    const d = Math.min(kl.length, lower.length) >= 4 && (kl.includes(lower) || lower.includes(kl)) ? Math.min(1, limit) : editDistance(lower, kl, bestD);
    if (d < bestD || (d === bestD && best !== undefined && k < best)) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

/** " (did you mean X?)" or "" when nothing is close. */
export function didYouMean(name: string, known: Iterable<string>): string {
  const n = nearest(name, known);
  return n === undefined ? '' : ` (did you mean ${n}?)`;
}
