#!/usr/bin/env node
// Self-test of the live-KVM pipeline, run inside the guest instead of xconf:
//   XCONF_LIVE_CMD='node ci/live-kvm/selftest.mjs' npm run test:live
// Checks /dev/kvm and KVM_CAP_XEN_HVM through the static probe, writes a JUnit
// file to $XCONF_LIVE_JUNIT (one skipped case included, to exercise the merge),
// and exits like xconf would: 0 all passed, 1 some failed.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';

const out = process.env.XCONF_LIVE_JUNIT ?? '/tmp/junit.xml';
const cases = [];
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

function check(name, fn) {
  const t0 = process.hrtime.bigint();
  let failure = null;
  try {
    fn();
  } catch (e) {
    failure = e instanceof Error ? e.message : String(e);
  }
  cases.push({ name, failure, time: Number(process.hrtime.bigint() - t0) / 1e9 });
}

let cap = null;
check('dev-kvm-exists', () => {
  if (!existsSync('/dev/kvm')) throw new Error('/dev/kvm is missing');
});
check('kvm-cap-xen-hvm', () => {
  const text = execFileSync('/usr/libexec/xconf-kvm-probe', { encoding: 'utf8' });
  const m = /KVM_CAP_XEN_HVM=(0x[0-9a-f]+)/.exec(text);
  if (!m) throw new Error(`unexpected probe output: ${text.trim()}`);
  cap = Number(m[1]);
  // HYPERCALL_MSR, INTERCEPT_HCALL, SHARED_INFO, RUNSTATE, EVTCHN_2LEVEL, EVTCHN_SEND
  if ((cap & 0x3f) !== 0x3f) throw new Error(`KVM_CAP_XEN_HVM=${m[1]} lacks some of 0x3f`);
});
check('node-runtime', () => {
  if (!process.versions.node.startsWith('20.')) throw new Error(`node ${process.versions.node}`);
});

const failures = cases.filter((c) => c.failure).length;
const body = cases
  .map((c) =>
    c.failure
      ? `    <testcase classname="selftest" name="${esc(c.name)}" time="${c.time}"><failure message="${esc(c.failure)}"/></testcase>`
      : `    <testcase classname="selftest" name="${esc(c.name)}" time="${c.time}"/>`,
  )
  .concat('    <testcase classname="selftest" name="skip-example" time="0"><skipped message="exercises skip counting"/></testcase>')
  .join('\n');
writeFileSync(
  out,
  `<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="xconf-live-selftest" tests="${cases.length + 1}" failures="${failures}" errors="0" skipped="1">
  <testsuite name="selftest" tests="${cases.length + 1}" failures="${failures}" errors="0" skipped="1">
    <properties><property name="kvm_cap_xen_hvm" value="${cap === null ? '' : `0x${cap.toString(16)}`}"/></properties>
${body}
  </testsuite>
</testsuites>
`,
);
console.log(`selftest: ${cases.length + 1} cases, ${failures} failed, 1 skipped; JUnit in ${out}`);
process.exit(failures ? 1 : 0);
