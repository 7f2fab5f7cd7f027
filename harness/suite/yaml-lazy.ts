// The YAML parser, loaded on first use: a run whose files all hit the parse
// cache (parse-cache.ts) never pays for importing it.
import { createRequire } from 'node:module';

type Yaml = typeof import('yaml');
let mod: Yaml | undefined;

export function yaml(): Yaml {
  return (mod ??= createRequire(import.meta.url)('yaml') as Yaml);
}
