import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { makeDirs } from './make-dirs.js';

describe('makeDirs', () => {
  const root = mkdtempSync(join(tmpdir(), 'xconf-dirs-'));
  it('makes every missing level and accepts an existing directory', () => {
    const d = join(root, 'a', 'b', 'c');
    makeDirs(d);
    expect(statSync(d).isDirectory()).toBe(true);
    makeDirs(d);
    makeDirs(root);
  });
  it('refuses a file in the way with ENOTDIR', () => {
    writeFileSync(join(root, 'f'), '');
    expect(() => makeDirs(join(root, 'f', 'x'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
    expect(() => makeDirs(join(root, 'f'))).toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  });
  it.runIf(existsSync('/proc/self'))('ends with an error under /proc, where a recursive mkdirSync never returns', () => {
    expect(() => makeDirs('/proc/xconf-nope/x')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
