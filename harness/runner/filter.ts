// The --filter language, compiled once into one regular expression.
//
//   hypercall/xen-version           no wildcard: selects every case whose id or
//                                   variant name contains the text (a substring)
//   *xen-version*   hypercall/*     `*` matches any characters, `/` included;
//                                   a pattern with a wildcard matches the whole
//                                   id or the whole variant name
//   version-?age                    `?` matches one character
//   {evtchn/fifo-*,sched/poll-*}    alternatives, nestable
//   hypercall/x[mode=32]            `[` `]` are plain characters (variant names)
//   \*  \{  \,                      a backslash makes the next character plain
//
// A case is selected when its id matches (all of its variants) or when one
// variant's name `id[k=v,...]` matches (that variant).

import { UsageError } from '../errors.js';

export type Matcher = (text: string) => boolean;

const WILD = new Set(['*', '?', '{']);

/** Whether the pattern uses a wildcard (outside backslash escapes). */
export function hasWildcard(pattern: string): boolean {
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === '\\') i++;
    else if (WILD.has(pattern[i])) return true;
  }
  return false;
}

const escapeRe = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The regular-expression source of a glob (unanchored), or a UsageError naming the fault. */
function globSource(p: string): string {
  let i = 0;
  const seq = (inBraces: boolean): string => {
    let out = '';
    while (i < p.length) {
      const c = p[i];
      if (inBraces && (c === ',' || c === '}')) return out;
      i++;
      if (c === '\\') {
        if (i >= p.length) throw new UsageError(`--filter '${p}': a trailing backslash escapes nothing`);
        out += escapeRe(p[i++]);
      } else if (c === '*') {
        while (p[i] === '*') i++;
        out += '.*';
      } else if (c === '?') out += '.';
      else if (c === '{') {
        const alts: string[] = [];
        for (;;) {
          alts.push(seq(true));
          if (i >= p.length) throw new UsageError(`--filter '${p}': '{' is never closed (write \\{ for a plain brace)`);
          if (p[i++] === '}') break;
        }
        out += `(?:${alts.join('|')})`;
      } else if (c === '}' && !inBraces) {
        throw new UsageError(`--filter '${p}': '}' without '{' (write \\} for a plain brace)`);
      } else out += escapeRe(c);
    }
    return out;
  };
  return seq(false);
}

/** Compile a --filter pattern once; the matcher is then a single regular-expression test. */
export function compileFilter(pattern: string): Matcher {
  if (pattern.trim() === '') throw new UsageError(`--filter is empty (give a case id, a substring of one, or a glob such as 'hypercall/*')`);
  const src = globSource(pattern);
  const re = new RegExp(hasWildcard(pattern) ? `^(?:${src})$` : src, 's');
  return (text) => re.test(text);
}
