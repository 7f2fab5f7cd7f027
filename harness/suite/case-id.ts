// What a case id or a variant name may contain: KTAP ends a test name at `#`
// (a directive) or at whitespace, so neither may appear in one.

export const BAD_ID_CHAR = /[#\s]/;

export function describeChar(c: string): string {
  return c === '#' ? "'#'" : c === ' ' ? 'a space' : `whitespace (U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
}
