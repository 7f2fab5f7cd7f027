#!/usr/bin/env node
// Merge the JUnit files the live-KVM guests sent back into one report.
//
//   node ci/live-kvm/merge-junit.mjs --out reports/live-kvm.xml RESULT_DIR...
//
// Each RESULT_DIR (written by run.sh) holds `meta` (key=value lines: label,
// series, release, cap, exit, status, reason, boot_seconds, taint), optionally
// `junit.xml` and `serial.log`. In the merged report every testsuite name gets
// the prefix "<label>/" (e.g. "linux-6.1/"), every testcase classname too, and
// every top-level suite gets <property> elements naming the kernel. Each kernel
// also gets a suite "<label>/live-kvm" with one case, "boot-and-run", that fails
// when the guest did not deliver (timeout, crash, no JUnit, unexpected exit code).
// A RESULT_DIR/qemu folder (the qemu target's run on that kernel, same layout, label
// "<label>/qemu") is merged the same way; its suites carry the inner run's own
// `target` property (qemu). Prints one summary line per kernel, the qemu target's
// numbers after a '|'. The report is written atomically.
// --file NAME merges RESULT_DIR/NAME instead of junit.xml; --no-boot leaves out
// the boot-and-run suites (for a part of the results, such as differential.xml,
// whose boot verdict is in the main report).
// Exit status: 0 when written, 2 on bad usage or unreadable input.
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';

function die(msg) {
  process.stderr.write(`merge-junit: ${msg}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let out = null;
let fileName = 'junit.xml';
let boot = true;
const dirs = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = args[++i];
  else if (args[i].startsWith('--out=')) out = args[i].slice(6);
  else if (args[i] === '--file') fileName = args[++i];
  else if (args[i] === '--no-boot') boot = false;
  else if (args[i].startsWith('-')) die(`unknown option ${args[i]}`);
  else dirs.push(args[i]);
}
if (!out || dirs.length === 0) die('usage: merge-junit.mjs --out FILE [--file NAME] [--no-boot] RESULT_DIR...');

// ---- small XML helpers (enough for JUnit; no DTDs, no entities beyond the five) ----

// Characters XML 1.0 forbids, plus ANSI escape sequences from a serial log.
const invalidXml = /\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g;
const esc = (s) =>
  String(s)
    .replace(invalidXml, '')
    .replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const unesc = (s) =>
  s.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g, (m, e) =>
    e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'amp' ? '&' : e === 'quot' ? '"' : e === 'apos' ? "'"
      : String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)),
  );

const markup =
  /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>|<!DOCTYPE[^>[]*(?:\[[\s\S]*?\])?\s*>|<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
const attrRe = /([^\s=/>]+)\s*=\s*("([^"]*)"|'([^']*)')/g;

function parseAttrs(text) {
  const attrs = new Map();
  for (const m of text.matchAll(attrRe)) attrs.set(m[1], unesc(m[3] ?? m[4]));
  return attrs;
}
function startTag(name, attrs, selfClosing) {
  let s = `<${name}`;
  for (const [k, v] of attrs) s += ` ${k}="${esc(v)}"`;
  return s + (selfClosing ? '/>' : '>');
}
const propsXml = (props) =>
  Object.entries(props)
    .map(([k, v]) => `<property name="${esc(k)}" value="${esc(v)}"/>`)
    .join('');

/**
 * Rewrite one JUnit document: returns the XML of its testsuite elements with
 * prefixed names and added properties, and counts of its testcases.
 */
function rewrite(xml, label, props) {
  const stack = [];
  const counts = { tests: 0, failures: 0, errors: 0, skipped: 0, known: 0, time: 0 };
  const ours = () => `<properties>${propsXml(props)}</properties>`;
  let rootName = null;
  let topDepth = 0; // depth of the suites that are copied: 1 under <testsuites>, 0 for a <testsuite> root
  let result = '';
  let inSuite = false; // inside a top-level suite: everything is copied
  let pendingProps = false; // a top-level suite was opened and has no properties yet
  let last = 0;

  for (const m of xml.matchAll(markup)) {
    const text = xml.slice(last, m.index);
    last = m.index + m[0].length;
    if (inSuite) result += text;
    const [, closing, name, attrText, selfClosing] = m;
    if (name === undefined) {
      // comment, CDATA, processing instruction or doctype
      if (inSuite) {
        if (pendingProps && m[0].startsWith('<![CDATA[')) {
          result += ours();
          pendingProps = false;
        }
        result += m[0];
      }
      continue;
    }
    if (closing) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
      if (inSuite) {
        if (pendingProps) result += ours();
        pendingProps = false;
        result += m[0];
        if (stack.length === topDepth) {
          inSuite = false;
          result += '\n  ';
        }
      }
      continue;
    }

    if (rootName === null) {
      rootName = name;
      if (name === 'testsuites') topDepth = 1;
      else if (name !== 'testsuite') throw new Error(`root element is <${name}>, not <testsuites> or <testsuite>`);
    } else if (stack.length === 0) {
      throw new Error('more than one root element');
    }
    const depth = stack.length;
    const attrs = parseAttrs(attrText);
    let tag = m[0];

    if (name === 'testsuite' && depth === topDepth) {
      inSuite = true;
      counts.time += Number(attrs.get('time')) || 0;
    }
    if (pendingProps) {
      if (name === 'properties') tag = selfClosing ? ours() : tag + propsXml(props);
      else result += ours();
      pendingProps = false;
    }
    if (name === 'testsuite') {
      attrs.set('name', `${label}/${attrs.get('name') ?? 'unnamed'}`);
      tag = startTag(name, attrs, selfClosing);
      if (depth === topDepth) {
        if (selfClosing) tag = `${startTag(name, attrs, false)}${ours()}</testsuite>\n  `;
        else pendingProps = true;
      }
    } else if (name === 'testcase') {
      counts.tests++;
      const cls = attrs.get('classname');
      attrs.set('classname', cls ? `${label}/${cls}` : label);
      tag = startTag(name, attrs, selfClosing);
    } else if (stack.at(-1) === 'testcase' && (name === 'failure' || name === 'error' || name === 'skipped')) {
      // A known divergence is written as pytest writes an xfail: <skipped type="pytest.xfail">.
      const kind = name === 'skipped' && attrs.get('type') === 'pytest.xfail' ? 'known' : name === 'failure' ? 'failures' : name === 'error' ? 'errors' : 'skipped';
      counts[kind]++;
    }
    if (inSuite) result += tag;
    if (!selfClosing) stack.push(name);
    else if (depth === topDepth) inSuite = false;
  }
  if (stack.length !== 0) throw new Error(`unclosed <${stack.at(-1)}>`);
  if (rootName === null) throw new Error('no root element');
  return { xml: result.trim(), counts };
}

// ---- per-kernel results ----

function readMeta(dir) {
  const file = join(dir, 'meta');
  if (!existsSync(file)) die(`${file} is missing`);
  const meta = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) meta[line.slice(0, i)] = line.slice(i + 1);
  }
  meta.label ??= basename(dir);
  return meta;
}

const okExit = new Set(['0', '4']);
const suites = [];
const totals = { tests: 0, failures: 0, errors: 0, skipped: 0, time: 0 };
const summary = [];

/** One result folder's suites, counts and verdict, added to the report; its summary words. */
function merge(dir) {
  const meta = readMeta(dir);
  const label = meta.label;
  const props = {
    kernel: meta.release || meta.series || 'unknown',
    kernel_series: meta.series ?? '',
    kvm_cap_xen_hvm: meta.cap ?? '',
    inner_exit_code: meta.exit ?? '',
    kernel_taint: meta.taint ?? '',
  };
  let inner = null;
  let problem = meta.status === 'ok' ? null : meta.reason || 'the guest did not complete';
  const junitFile = join(dir, fileName);
  if (existsSync(junitFile)) {
    try {
      inner = rewrite(readFileSync(junitFile, 'utf8'), label, props);
    } catch (e) {
      problem = `the JUnit file from the guest is not usable: ${e.message}`;
    }
  }
  if (boot && !problem && inner && meta.exit === '1' && inner.counts.failures + inner.counts.errors === 0) {
    // The cases passed: a disagreement with the reference is what failed (it has its own report).
    const diffFile = join(dir, 'differential.xml');
    const disagreements = existsSync(diffFile) ? (readFileSync(diffFile, 'utf8').match(/<failure /g) ?? []).length : 0;
    problem = disagreements
      ? `the run disagreed with its reference on ${disagreements} case(s) (see the differential report)`
      : 'the inner command exited 1 but its JUnit file reports no failure';
  }
  if (!problem && !okExit.has(meta.exit) && meta.exit !== '1') {
    problem = `the inner command exited ${meta.exit}`;
  }

  const seconds = Number(meta.boot_seconds) || 0;
  let own = `<testsuite name="${esc(label)}/live-kvm" tests="1" failures="0" errors="${problem ? 1 : 0}" skipped="0" time="${seconds}">`;
  own += `<properties>${propsXml(props)}</properties>`;
  own += `<testcase classname="${esc(label)}/live-kvm" name="boot-and-run" time="${seconds}">`;
  if (problem) {
    own += `<error message="${esc(problem)}" type="live-kvm"/>`;
    const log = join(dir, 'serial.log');
    if (existsSync(log)) {
      const tail = readFileSync(log, 'utf8').replace(/\r/g, '').split('\n').slice(-60).join('\n');
      own += `<system-out>${esc(tail)}</system-out>`;
    }
  }
  own += '</testcase></testsuite>';
  if (boot) suites.push(own);
  else problem = null; // a part report (the differential): the boot verdict is in the main report
  if (inner?.xml) suites.push(inner.xml);

  const c = inner?.counts ?? { tests: 0, failures: 0, errors: 0, skipped: 0, known: 0, time: 0 };
  totals.tests += c.tests + (boot ? 1 : 0);
  totals.failures += c.failures;
  totals.errors += c.errors + (problem ? 1 : 0);
  totals.skipped += c.skipped;
  totals.time += seconds;
  return {
    meta, props, problem,
    counts: `exit ${(meta.exit ?? '-').padEnd(3)} tests ${c.tests} failures ${c.failures + c.errors} skipped ${c.skipped} known ${c.known}`,
    verdict: (inner ? '' : ' (no JUnit)') +
      (problem ? ` FAILED: ${problem}` : okExit.has(meta.exit) ? ' ok' : ` FAILED: inner exit ${meta.exit}`),
  };
}

for (const dir of dirs) {
  const k = merge(dir);
  // The qemu target's run on the same kernel (run.sh writes it to <dir>/qemu): its numbers
  // go next to the kvm target's on the kernel's summary line.
  const qdir = join(dir, 'qemu');
  const q = existsSync(join(qdir, 'meta')) && (boot || existsSync(join(qdir, fileName))) ? merge(qdir) : null;
  summary.push(
    `${boot ? '' : 'differential '}${k.meta.label.padEnd(11)} kernel ${String(k.props.kernel).padEnd(9)} KVM_CAP_XEN_HVM=${(k.meta.cap || '?').padEnd(5)} ` +
      `${k.counts} boot ${k.meta.boot_seconds ?? '?'}s taint ${k.meta.taint || '?'}${k.verdict}` +
      (q ? ` | qemu target: ${q.counts}${q.verdict}` : ''),
  );
}

const doc =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  `<testsuites name="xconf live-kvm" tests="${totals.tests}" failures="${totals.failures}" errors="${totals.errors}" ` +
  `time="${totals.time}">\n` +
  suites.map((s) => `  ${s}\n`).join('') +
  '</testsuites>\n';

mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
writeFileSync(tmp, doc);
renameSync(tmp, out);
for (const line of summary) console.log(line);
console.log(`merged report: ${out}`);
