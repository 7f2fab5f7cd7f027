// The closed op vocabulary: every op a case file may name.
import type { OpDef } from './types.js';
import * as core from './core.js';
import * as xen from './xen.js';
import * as runstate from './runstate.js';
import * as sched from './sched.js';
import * as evtchn from './evtchn.js';
import * as kvm from './kvm.js';
import * as kvmAttr from './kvm-attr.js';
import * as gnttab from './gnttab.js';
import * as xenstore from './xenstore.js';

const modules: Array<Record<string, unknown>> = [core, xen, runstate, sched, evtchn, gnttab, kvm, kvmAttr, xenstore];

export const ops = new Map<string, OpDef>();
for (const m of modules) {
  for (const v of Object.values(m)) {
    if (v && typeof v === 'object' && 'name' in v && 'encode' in v) {
      const op = v as OpDef;
      if (ops.has(op.name)) throw new Error(`op ${op.name} defined twice`);
      ops.set(op.name, op);
    }
  }
}

export { constants } from './constants.js';
