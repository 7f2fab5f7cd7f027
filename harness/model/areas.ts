// Guest-visible areas that case files can name in memory expectations, e.g.
// `shared_info.evtchn_pending[5]` or `vcpu_info[1].evtchn_upcall_pending`.
// Each area says which layout it has and where it lives; both targets report
// placements through an AreaView, so a path reads the same bytes everywhere.

import {
  HYPERCALL_PAGE, SHARED_INFO, VCPU_INFO, VCPU_INFO_SIZE, XEN_LEGACY_MAX_VCPUS,
  type StructLayout, type Width,
} from './memory-layout.js';

/** Where a domain's areas are right now. Keys: `name` or `name/index`. */
export interface AreaView {
  width: Width;
  get(key: string): number | undefined;
}

export interface AreaDef {
  name: string;
  /** Whether the path takes an index (`vcpu_info[1]`). */
  indexed: boolean;
  layout(width: Width): StructLayout;
  /** Base gpa of element `index`, or undefined when the area is not placed. */
  locate(view: AreaView, index: number): number | undefined;
}

export const areaDefs = new Map<string, AreaDef>();

export function registerArea(def: AreaDef): void {
  if (areaDefs.has(def.name)) throw new Error(`area ${def.name} registered twice`);
  areaDefs.set(def.name, def);
}

registerArea({
  name: 'shared_info',
  indexed: false,
  layout: (w) => SHARED_INFO[w],
  locate: (v) => v.get('shared_info'),
});

registerArea({
  name: 'vcpu_info',
  indexed: true,
  layout: (w) => VCPU_INFO[w],
  locate: (v, i) => {
    const registered = v.get(`vcpu_info/${i}`);
    if (registered !== undefined) return registered;
    const si = v.get('shared_info');
    if (si === undefined || i >= XEN_LEGACY_MAX_VCPUS) return undefined;
    return si + i * VCPU_INFO_SIZE;
  },
});

registerArea({
  name: 'hypercall_page',
  indexed: false,
  layout: () => HYPERCALL_PAGE,
  locate: (v) => v.get('hypercall_page'),
});
