// The case-file schema (zod). Op arguments are validated separately by each
// op's own schema once the op name is known (see loader.ts).

import { z } from 'zod';
import { int, IntArg } from '../ops/types.js';
import { CAPABILITIES, FLAGS } from './vocabulary.js';
import { didYouMean } from './suggest.js';

const custom = (code: string) => ({ params: { code } });

/** A name from a closed vocabulary; an unknown one is named, with the nearest known name. */
const vocabulary = (table: Record<string, string>, code: string, what: string, listing: string) =>
  z.string().superRefine((s, ctx) => {
    if (Object.hasOwn(table, s)) return;
    ctx.addIssue({ code: 'custom', message: `unknown ${what} '${s}'${didYouMean(s, Object.keys(table))} (${listing})`, ...custom(code) });
  });

const capability = vocabulary(CAPABILITIES, 'UNKNOWN_CAPABILITY', 'capability', 'see `xconf list --capabilities`');
const flag = vocabulary(FLAGS, 'UNKNOWN_FLAG', 'flag', `known: ${Object.keys(FLAGS).join(', ')}`);
const varName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'variable names are letters, digits and _');

/** An address that may be switched off with `null`. */
const optionalAddress = z.union([int(), z.null()]).optional();

export const domainSchema = z.strictObject({
  id: int(),
  vcpus: int().optional(),
  privileged: z.boolean().optional(),
  memory: int().optional(),
  shared_info: optionalAddress,
  hypercall_page: optionalAddress,
  limits: z.record(z.string().regex(/^[a-z_]+$/), int()).optional(),
});

export const setupSchema = z.strictObject({
  mode: int().optional(),
  cpu: z.union([z.enum(['intel', 'amd']), z.string().regex(/^\$[A-Za-z_][A-Za-z0-9_]*$/, 'intel, amd, or a $variable')]).optional(),
  xen_version: z.string().regex(/^\d+\.\d+(\S*)$/, 'a version such as "4.19" or "4.19.0-rc"').optional(),
  scratch: int().optional(),
  domains: z.array(domainSchema).min(1).optional(),
});

const scalar = z.union([z.bigint(), z.number(), z.string()]);

export const expectSchema = z.strictObject({
  ret: int().optional(),
  fault: z.union([z.string(), z.null()]).optional(),
  out: z.record(z.string(), z.union([scalar, z.array(scalar)])).optional(),
  memory: z.record(z.string(), scalar).optional(),
  served_by: z.enum(['kernel', 'vmm', 'model']).optional(),
  /** Expressions over variables (after this step's save) and the values they must have. */
  values: z.record(z.string(), scalar).optional(),
});

export const stepSchema = z.strictObject({
  op: z.string(),
  name: z.string().optional(),
  args: z.unknown().optional(),
  dom: int().optional(),
  vcpu: int().optional(),
  cpl: int().optional(),
  via: z.enum(['page', 'vmcall', 'vmmcall', 'auto']).optional(),
  expect: expectSchema.optional(),
  save: z.record(varName, z.string()).optional(),
});

export const caseSchema = z.strictObject({
  description: z.string().min(1),
  spec: z.union([z.string(), z.array(z.string())]).optional(),
  requires: z.array(capability).optional(),
  flags: z.array(flag).optional(),
  timeout: z.union([z.bigint(), z.number()]).transform(Number).pipe(z.number().positive().max(3600)).optional(),
  matrix: z.record(varName, z.array(z.union([z.bigint(), z.number().int(), z.string()])).min(1).max(64)).optional(),
  vars: z.record(varName, int()).optional(),
  setup: setupSchema.optional(),
  /** Each step is checked on its own (check-case.ts), so one bad step hides no other. */
  steps: z.array(z.unknown()).min(1),
});

export type CaseFile = z.output<typeof caseSchema>;
export type StepFile = z.output<typeof stepSchema>;
export type ExpectFile = z.output<typeof expectSchema>;
export type SetupFile = z.output<typeof setupSchema>;
export { IntArg };
