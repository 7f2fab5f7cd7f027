// The report files a run writes: checked before anything runs (never onto a
// case file, never a directory), locked so two runs cannot write one path,
// and cleared at start so a run that dies before its first write never leaves
// the previous run's report looking current.
import { closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { makeDirs } from '../make-dirs.js';

export interface ReportPath {
  /** The option that named it, for messages ("--junit"). */
  option: string;
  path: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses report paths that would overwrite a case file, a directory, or each other. */
export function checkReportPaths(reports: ReportPath[]): void {
  const seen = new Map<string, string>();
  for (const r of reports) {
    if (/\.ya?ml$/i.test(r.path)) throw new UsageError(`${r.option}=${r.path}: refusing to write a report over a YAML file (case files are .yaml); choose a path ending in .xml, .ktap or .json`);
    if (existsSync(r.path) && statSync(r.path).isDirectory()) throw new UsageError(`${r.option}=${r.path} is a directory; give a file path`);
    const abs = resolve(r.path);
    const other = seen.get(abs);
    if (other) throw new UsageError(`${other} and ${r.option} both name ${r.path}; give each report its own file`);
    seen.set(abs, r.option);
  }
}

/**
 * Takes a lock beside each report path (`.NAME.lock`, holding the pid). A live
 * holder makes this refuse, naming it; a dead holder's lock is taken over.
 * Returns the release function (also run at exit).
 */
export function lockReports(reports: ReportPath[]): () => void {
  const held: string[] = [];
  const release = () => {
    for (const l of held.splice(0)) {
      try { unlinkSync(l); } catch { /* already gone */ }
    }
  };
  for (const r of reports) {
    const abs = resolve(r.path);
    const lock = join(dirname(abs), `.${basename(abs)}.lock`);
    try {
      makeDirs(dirname(abs));
    } catch (e) {
      release();
      throw new UsageError(`${r.option}=${r.path}: cannot create its directory (${(e as NodeJS.ErrnoException).code})`);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(lock, 'wx');
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        held.push(lock);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') {
          release();
          throw new UsageError(`${r.option}=${r.path}: cannot create its lock file ${lock} (${code})`);
        }
        const pid = Number.parseInt(readFileSync(lock, 'utf8'), 10);
        if (attempt === 0 && (!Number.isInteger(pid) || !alive(pid))) {
          try { unlinkSync(lock); } catch { /* raced with its owner */ }
          continue;
        }
        release();
        throw new UsageError(`${r.option}=${r.path} is being written by another xconf run (pid ${pid}); wait for it to finish or choose another path`);
      }
    }
  }
  process.once('exit', release);
  return release;
}

/** Removes the previous reports at these paths, so none can pass for this run's. */
export function clearReports(reports: ReportPath[]): void {
  for (const r of reports) {
    try {
      unlinkSync(r.path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw new UsageError(`${r.option}=${r.path}: cannot replace the previous report (${code})`);
    }
  }
}
