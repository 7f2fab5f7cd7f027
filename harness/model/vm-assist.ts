// HYPERVISOR_vm_assist. Source: xen/common/domain.c (vm_assist),
// xen/arch/x86/include/asm/domain.h (HVM_VM_ASSIST_MASK: only runstate_update_flag).

import { err } from './errno.js';
import { HYPERVISOR, registerHypercalls, type HypercallContext } from './hypercall.js';

export const VMASST_CMD = { enable: 0, disable: 1 } as const;
export const VMASST_TYPE = {
  '4gb_segments': 0, '4gb_segments_notify': 1, writable_pagetables: 2,
  pae_extended_cr3: 3, architectural_iopl: 4, runstate_update_flag: 5, m2p_strict: 32,
} as const;

const HVM_VM_ASSIST_MASK = 1 << VMASST_TYPE.runstate_update_flag;

export function vmAssist(ctx: HypercallContext, args: bigint[]): number {
  // do_vm_assist(unsigned int cmd, unsigned int type): both truncated to 32 bits.
  const cmd = Number(args[0] & 0xffffffffn);
  const type = Number(args[1] & 0xffffffffn);
  // The type is checked against the valid mask first (-EINVAL), then the command (-ENOSYS).
  if (type >= 64 || type > 31 || (HVM_VM_ASSIST_MASK & (1 << type)) === 0) return err('EINVAL');
  const bit = 1 << type;
  switch (cmd) {
    case VMASST_CMD.enable:
      ctx.domain.vmAssist |= bit;
      return 0;
    case VMASST_CMD.disable:
      ctx.domain.vmAssist &= ~bit;
      return 0;
  }
  return err('ENOSYS');
}

export function vmAssistEnabled(d: { vmAssist: number }, type: number): boolean {
  return (d.vmAssist & (1 << type)) !== 0;
}

registerHypercalls({ [HYPERVISOR.vm_assist]: vmAssist });
