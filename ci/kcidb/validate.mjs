#!/usr/bin/env node
// Validates KCIDB I/O JSON files against KCIDB's own schema (v5.3, in
// ../shared/data/kcidb/ beside the checkout, or --schema=PATH).
//
//   node ci/kcidb/validate.mjs [--schema=PATH] FILE...
//
// Prints one line per file (tests and their statuses) or per problem.
// Exit status: 0 all valid, 1 a file is invalid, 2 bad usage or unreadable input.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
let schemaPath = [join(root, '..', 'shared'), join(root, '..', '..', 'shared')]
  .map((d) => join(d, 'data', 'kcidb', 'kcidb-io.schema.v5.3.json')).find(existsSync);
const files = [];
for (const a of args) {
  if (a.startsWith('--schema=')) schemaPath = a.slice(9);
  else if (a.startsWith('-')) { console.error(`kcidb-validate: unknown option ${a} (usage: validate.mjs [--schema=PATH] FILE...)`); process.exit(2); }
  else files.push(a);
}
if (!files.length) { console.error('kcidb-validate: usage: validate.mjs [--schema=PATH] FILE...'); process.exit(2); }
if (!schemaPath || !existsSync(schemaPath)) { console.error('kcidb-validate: the KCIDB v5.3 schema is not at ../shared/data/kcidb/ (give --schema=PATH)'); process.exit(2); }

const ajv = new Ajv({ strict: false, allErrors: true });
(addFormats.default ?? addFormats)(ajv);
const validate = ajv.compile(JSON.parse(readFileSync(schemaPath, 'utf8')));
let bad = 0;
for (const f of files) {
  let doc;
  try {
    doc = JSON.parse(readFileSync(f, 'utf8'));
  } catch (e) {
    console.error(`kcidb-validate: ${f}: ${e.code ?? e.message}`);
    process.exit(2);
  }
  if (!validate(doc)) {
    bad++;
    for (const e of validate.errors.slice(0, 10)) console.log(`${f}: ${e.instancePath || '/'}: ${e.message}`);
    continue;
  }
  const by = {};
  for (const t of doc.tests ?? []) by[t.status] = (by[t.status] ?? 0) + 1;
  console.log(`${f}: valid KCIDB v${doc.version.major}.${doc.version.minor ?? 0}, ${doc.tests?.length ?? 0} tests (${Object.entries(by).map(([k, n]) => `${k} ${n}`).join(', ')})`);
}
process.exit(bad ? 1 : 0);
