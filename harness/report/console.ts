// The console summary at the end of a run: a recap of failures (one line each,
// with the case file and the failing step's line), known divergences, skips
// grouped by their root cause, the differential block, who served the steps
// on a live target, and a closing counts line:
//   N passed, N failed, N skipped, N known divergences
// Failure details, and with --verbose every case, are printed as each case
// ends (see progress.ts), so the recap stays short enough to read after a long run.
import { counts, type CaseResult, type DiffSummary, type RunSummary } from '../runner/results.js';
import { diffCounts, diffReason } from '../runner/differential.js';

export interface Style {
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
}

const plain: Style = { red: (s) => s, green: (s) => s, yellow: (s) => s, dim: (s) => s };
const ansi = (code: number) => (s: string) => `\u001b[${code}m${s}\u001b[0m`;
const colored: Style = { red: ansi(31), green: ansi(32), yellow: ansi(33), dim: ansi(2) };

/** Colour only on a terminal, never when NO_COLOR is set (https://no-color.org). */
export function styleFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): Style {
  return stream.isTTY && !env.NO_COLOR ? colored : plain;
}

/** Where a case stands in its file: the failing step's line, else the file. */
export function location(r: CaseResult): string {
  const step = r.steps.find((s) => s.status === 'fail' || s.status === 'error');
  return step ? `${r.file}:${step.line}` : r.file;
}

/** The differential block: a counts line, one line per disagreement, not-compared reasons grouped. */
export function differentialSummary(d: DiffSummary, opts: { verbose?: boolean } = {}): string[] {
  const out: string[] = [];
  for (const e of d.entries) {
    if (e.verdict === 'disagree') out.push(`DISAGREE ${e.name}: ${diffReason(e)}`);
    else if (e.verdict === 'known' && opts.verbose) out.push(`KNOWN ${e.name}: ${diffReason(e)}`);
    else if (e.verdict === 'agree' && opts.verbose) out.push(`AGREE ${e.name}`);
  }
  const why = new Map<string, number>();
  for (const e of d.entries) if (e.verdict === 'not-compared') why.set(e.reasons[0], (why.get(e.reasons[0]) ?? 0) + 1);
  for (const [r, n] of [...why].sort()) out.push(`NOT COMPARED x${n}: ${r}`);
  const c = diffCounts(d);
  out.push(`differential: ${d.target} vs ${d.reference}: ${c.compared} compared, ${c.agree} agree, ${c.disagree} disagree, ${c.known} known divergences, ${c.notCompared} not compared`);
  return out;
}

/** A capability's reason up to its first ';': the cause, without the per-capability detail. */
const causeOf = (reason: string) => reason.split(';')[0].trim();

/**
 * Skipped cases grouped by root cause: each case is counted once, under the
 * cause (of one of its missing capabilities) that the most skipped cases share,
 * so a target lacking one thing says so in one line.
 */
export function skipGroups(results: CaseResult[], missing: Readonly<Record<string, string>>): Array<{ cause: string; n: number }> {
  const causes = (r: CaseResult): string[] => {
    if (!r.missing?.length) return [r.message ?? 'skipped'];
    return [...new Set(r.missing.map((m) => (missing[m] ? `${causeOf(missing[m])}` : `${m}: not implemented by this target`)))];
  };
  let left = results.filter((r) => r.status === 'skip').map(causes);
  const out: Array<{ cause: string; n: number }> = [];
  while (left.length) {
    const freq = new Map<string, number>();
    for (const cs of left) for (const c of cs) freq.set(c, (freq.get(c) ?? 0) + 1);
    const [cause, n] = [...freq].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    out.push({ cause, n });
    left = left.filter((cs) => !cs.includes(cause));
  }
  return out;
}

/**
 * On a live target: cases with a guest step (hypercall, MSR write) the kernel served, those with
 * kernel host ops only (KVM ioctls, guest runs driven by the host), those whose hypercalls the
 * VMM layer answered but whose events the kernel delivered (KVM_XEN_HVM_EVTCHN_SEND, as QEMU
 * hands them over), and those the VMM layer alone answered.
 */
export function servedCounts(results: CaseResult[]): { kernel: number; hostOnly: number; kernelDelivery: number; vmmOnly: number; withVmm: number; ran: number } | undefined {
  const ran = results.filter((r) => r.status !== 'skip');
  if (!ran.some((r) => r.steps.some((s) => s.servedBy === 'kernel' || s.servedBy === 'vmm'))) return undefined;
  const c = { kernel: 0, hostOnly: 0, kernelDelivery: 0, vmmOnly: 0, withVmm: 0, ran: ran.length };
  for (const r of ran) {
    // On the qemu target the VMM is QEMU: how many cases it answered at least one step of.
    if (r.steps.some((s) => s.servedBy === 'vmm')) c.withVmm++;
    if (r.steps.some((s) => s.servedBy === 'kernel' && s.kind !== 'host')) c.kernel++;
    else if (r.steps.some((s) => s.servedBy === 'kernel')) c.hostOnly++;
    else if (r.steps.some((s) => s.kernelDeliveries)) c.kernelDelivery++;
    else c.vmmOnly++;
  }
  return c;
}

export function countsLine(results: CaseResult[], style: Style = plain): string {
  const c = counts(results);
  const failed = c.fail + c.error;
  return `${style.green(`${c.pass} passed`)}, ${failed ? style.red(`${failed} failed`) : '0 failed'}, ${c.skip} skipped, ${c.xfail ? style.yellow(`${c.xfail} known divergences`) : '0 known divergences'}`;
}

export function consoleSummary(run: RunSummary, opts: { verbose?: boolean; style?: Style } = {}): string {
  const style = opts.style ?? plain;
  const out: string[] = [];
  for (const r of run.results) {
    if (r.status === 'xfail') out.push(style.yellow(`KNOWN ${r.name} (${r.divergence!.where}): ${r.divergence!.reason}`));
  }
  for (const g of skipGroups(run.results, run.missing ?? {})) out.push(style.dim(`SKIP ${g.n}: ${g.cause}`));
  if (run.differential) out.push(...differentialSummary(run.differential, opts));
  const failures = run.results.filter((r) => r.status === 'fail' || r.status === 'error');
  if (failures.length) {
    out.push(`failures (${failures.length}):`);
    for (const r of failures) out.push(style.red(`  ${r.status.toUpperCase()} ${r.name} (${location(r)}): ${(r.message ?? '').split('\n')[0]}`));
  }
  for (const p of run.expectationProblems ?? []) out.push(style.red(`STALE ${p}`));
  if (run.interrupted) out.push(style.red(`INTERRUPTED (${run.interrupted}): ${run.results.length} of ${run.planned ?? run.results.length} cases ran; reports mark the run as partial`));
  const c = counts(run.results);
  out.push(`xconf: target=${run.target} cases=${c.total} (${(run.durationMs / 1000).toFixed(2)}s)`);
  const served = servedCounts(run.results);
  if (served) {
    out.push(`kernel served: ${served.kernel} cases, host ops only: ${served.hostOnly}, VMM with kernel delivery: ${served.kernelDelivery}, VMM only: ${served.vmmOnly}; ` +
      `a step served by the VMM${run.target === 'qemu' ? ' (QEMU)' : ''}: ${served.withVmm} of ${served.ran}`);
  }
  out.push(countsLine(run.results, style));
  return out.join('\n') + '\n';
}
