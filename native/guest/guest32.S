# xconf test guest, 32-bit protected mode (flat segments; identity paging with 4 MiB pages).
#
# Same contract as guest64.S (see layout.inc): the VMM starts each vCPU at
# `entry` at CPL 0 with
#     edi = its per-vCPU block, esp = block + KSTACK_TOP, IF = 0.
# 64-bit result fields get the 32-bit register value, zero-extended.
#
# Register use in the command loop: ebx = block, esi = current command,
# edi = current result, ebp = command index. Ops may clobber any register but
# ebx; `cmd_ok` reloads the others from the header.
# Hypercall convention: eax = nr, args ebx ecx edx esi edi ebp, result eax.

    .include "layout.inc"

    .code32
    .text
    .globl _start
_start:
image_header:
    .long GUEST_MAGIC, LAYOUT_VERSION, 32, entry
    .long stubs, STUB_SIZE, user_return_ud2, BLOCK_SIZE
    .long BLK_CMDS, BLK_RESULTS, MAX_CMDS, CMD_SIZE
    .long RESULT_SIZE, BLK_UPCALL_RING, UPCALL_RING_ENTRIES, PORT_BASE
    .long OP_MAX, 0, BLK_GDT, BLK_TSS
    .long image_end - _start, 0, 0, 0

.macro RELOAD
    mov %esp, %ebx
    and $BLOCK_MASK, %ebx
    movl HDR_CUR(%ebx), %ebp
    mov HDR_CUR_RESULT(%ebx), %edi
    mov %ebp, %esi
    shl $6, %esi
    lea BLK_CMDS(%ebx,%esi), %esi
.endm

.macro RESTORE_IF
    cmpl $0, HDR_IRQ_ON(%ebx)
    je 91f
    sti
    jmp 92f
91: cli
92:
.endm

.macro KERNEL_DATA_SEGMENTS
    mov $SEL_KDATA, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
.endm

.macro SET_STATUS code
    movl HDR_GEN(%ebx), %eax
    shl $8, %eax
    or $\code, %eax
    movl %eax, RES_STATUS(%edi)
.endm

# Store a 32-bit register into a 64-bit result field of the record at `base`.
.macro PUT64 reg, off, base=%edi
    movl \reg, \off(\base)
    movl $0, \off+4(\base)
.endm

.macro INC64 off
    addl $1, \off(%edi)
    adcl $0, \off+4(%edi)
.endm

# With eax, ebx, ecx, edx, esi, edi, ebp pushed (eax lowest), pop them into
# ret and aux0..aux5 of the current result record. Clobbers eax and ecx.
.macro POP_CALL_RESULTS
    mov %esp, %ecx
    and $BLOCK_MASK, %ecx
    mov HDR_CUR_RESULT(%ecx), %ecx
    pop %eax
    PUT64 %eax, RES_RET, %ecx
    pop %eax
    PUT64 %eax, RES_AUX0, %ecx
    pop %eax
    PUT64 %eax, RES_AUX1, %ecx
    pop %eax
    PUT64 %eax, RES_AUX2, %ecx
    pop %eax
    PUT64 %eax, RES_AUX3, %ecx
    pop %eax
    PUT64 %eax, RES_AUX4, %ecx
    pop %eax
    PUT64 %eax, RES_AUX5, %ecx
.endm

.macro PUSH_CALL_REGS
    push %ebp
    push %edi
    push %esi
    push %edx
    push %ecx
    push %ebx
    push %eax
.endm

    .balign 16
entry:
    mov %edi, %ebx
    testl $HF_LAPIC, HDR_FLAGS(%ebx)
    jz 1f
    movl $0x1ff, LAPIC_SVR          # software-enable the LAPIC, spurious vector 0xff
1:  movl $1, HDR_IRQ_ON(%ebx)

batch_start:
    lea KSTACK_TOP(%ebx), %esp
    RESTORE_IF
    movl $0, HDR_RECOVER(%ebx)
    movl $1, HDR_STATE(%ebx)
    xor %ebp, %ebp

next_cmd:
    movl HDR_COUNT(%ebx), %eax
    cmp $MAX_CMDS, %eax
    jbe 1f
    mov $MAX_CMDS, %eax
1:  cmp %eax, %ebp
    jae batch_done
    movl %ebp, HDR_CUR(%ebx)
    mov %ebp, %esi
    shl $6, %esi
    lea BLK_RESULTS(%ebx,%esi), %edi
    lea BLK_CMDS(%ebx,%esi), %esi
    PUT64 %edi, HDR_CUR_RESULT, %ebx
    PUT64 %esp, HDR_KSP, %ebx
    movl $1, HDR_RECOVER(%ebx)
    movl CMD_OP(%esi), %eax
    cmp $OP_MAX, %eax
    ja op_bad
    jmp *dispatch(,%eax,4)

cmd_ok:
    RELOAD
    movl $0, HDR_RECOVER(%ebx)
    SET_STATUS ST_OK
    inc %ebp
    jmp next_cmd

recover:
    RELOAD
    RESTORE_IF
    movl HDR_FAULT_VEC(%ebx), %eax
    movl %eax, RES_VECTOR(%edi)
    movl HDR_FAULT_ERR(%ebx), %eax
    PUT64 %eax, RES_AUX0
    movl HDR_FAULT_RIP(%ebx), %eax
    PUT64 %eax, RES_AUX1
    movl HDR_FAULT_CR2(%ebx), %eax
    PUT64 %eax, RES_AUX2
    movl HDR_FAULT_CS(%ebx), %eax
    PUT64 %eax, RES_AUX3
    SET_STATUS ST_FAULT
    inc %ebp
    jmp next_cmd

batch_done:
    movl $0, HDR_RECOVER(%ebx)
    movl HDR_GEN(%ebx), %eax
    movl %eax, HDR_DONE_GEN(%ebx)
    movl $2, HDR_STATE(%ebx)
    mov $PORT_DONE, %dx
    out %eax, %dx
    jmp wait_next_batch

    .balign 4
dispatch:
    .long op_end, op_hcall, op_vmcall, op_vmmcall
    .long op_wrmsr, op_rdmsr, op_read, op_write
    .long op_readloop, op_wait_upcall, op_hlt, op_yield
    .long op_log, op_set_upcall, op_irq, op_cpuid

op_bad:
    ud2

op_end:
    SET_STATUS ST_OK
    jmp batch_done

# ---- calls ----
op_hcall:
    mov CMD_A0(%esi), %eax
    shl $5, %eax
    add HDR_HCALL_PAGE(%ebx), %eax
    jmp do_invoke
op_vmcall:
    mov $stub_vmcall, %eax
    jmp do_invoke
op_vmmcall:
    mov $stub_vmmcall, %eax

do_invoke:                          # eax = call target, esi = command
    testl $CF_CPL3, CMD_FLAGS(%esi)
    jnz invoke_user
    push %eax
    mov %esi, %eax
    call invoke32
    add $4, %esp
    PUSH_CALL_REGS
    POP_CALL_RESULTS
    jmp cmd_ok

# eax = command, 4(%esp) = call target. Runs at CPL 0 or CPL 3.
invoke32:
    mov CMD_A1(%eax), %ebx
    mov CMD_A2(%eax), %ecx
    mov CMD_A3(%eax), %edx
    mov CMD_A4(%eax), %esi
    mov CMD_A5(%eax), %edi
    mov CMD_A6(%eax), %ebp
    mov CMD_A0(%eax), %eax
    call *4(%esp)
    ret

stub_vmcall:
    vmcall
    ret
stub_vmmcall:
    vmmcall
    ret

invoke_user:
    PUT64 %esp, HDR_KSP, %ebx
    movl $user_resume, HDR_RESUME_IP(%ebx)
    movl $0, HDR_RESUME_IP+4(%ebx)
    lea USTACK_TOP-4(%ebx), %ecx
    mov %eax, (%ecx)                # call target, read by invoke32 as 4(%esp)
    pushl $(SEL_UDATA | 3)
    push %ecx
    pushfl
    pushl $(SEL_UCODE32 | 3)
    pushl $user_entry
    mov $(SEL_UDATA | 3), %eax
    mov %ax, %ds
    mov %ax, %es
    mov %esi, %eax
    iret

user_entry:                         # CPL 3
    call invoke32
# The way back to CPL 0: a #UD recognised by its address (see guest64.S).
user_return_ud2:
    ud2

user_return_isr:                    # CPL 0 on the TSS esp0 stack
    PUSH_CALL_REGS
    POP_CALL_RESULTS
    mov %esp, %ebx
    and $BLOCK_MASK, %ebx
    mov $SEL_KDATA, %eax
    mov %ax, %ds
    mov %ax, %es
    mov HDR_KSP(%ebx), %esp
    jmp *HDR_RESUME_IP(%ebx)

user_resume:
    RELOAD
    RESTORE_IF
    jmp cmd_ok

# ---- MSRs, memory ----
op_wrmsr:
    mov CMD_A0(%esi), %ecx
    mov CMD_A1(%esi), %eax
    mov CMD_A1+4(%esi), %edx
    wrmsr
    jmp cmd_ok

op_rdmsr:
    mov CMD_A0(%esi), %ecx
    rdmsr
    movl %eax, RES_RET(%edi)
    movl %edx, RES_RET+4(%edi)
    jmp cmd_ok

op_read:
    mov CMD_A0(%esi), %edx
    mov CMD_A1(%esi), %ecx
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    cmp $4, %ecx
    je 4f
    mov (%edx), %eax
    movl %eax, RES_RET(%edi)
    mov 4(%edx), %eax
    movl %eax, RES_RET+4(%edi)
    jmp cmd_ok
1:  movzbl (%edx), %eax
    jmp 9f
2:  movzwl (%edx), %eax
    jmp 9f
4:  movl (%edx), %eax
9:  PUT64 %eax, RES_RET
    jmp cmd_ok

op_write:
    mov CMD_A0(%esi), %edx
    mov CMD_A1(%esi), %ecx
    mov CMD_A2(%esi), %eax
    cmp $1, %ecx
    je 1f
    cmp $2, %ecx
    je 2f
    cmp $4, %ecx
    je 4f
    mov %eax, (%edx)
    mov CMD_A2+4(%esi), %eax
    mov %eax, 4(%edx)
    jmp cmd_ok
1:  mov %al, (%edx)
    jmp cmd_ok
2:  mov %ax, (%edx)
    jmp cmd_ok
4:  mov %eax, (%edx)
    jmp cmd_ok

# ---- read loop (see guest64.S for the contract) ----
op_readloop:
    mov CMD_A4(%esi), %eax
    cmp $RL_COPY, %eax
    je rl_copy
    cmp $RL_RUNSTATE64, %eax
    je rl_runstate
    cmp $RL_RUNSTATE32, %eax
    je rl_runstate
    ud2

rl_copy:
    sub $24, %esp                   # 0 src, 4 len, 8 iterations, 12 dst, 16 i, 20 changes
    mov CMD_A0(%esi), %eax
    mov %eax, 0(%esp)
    mov CMD_A1(%esi), %eax
    mov %eax, 4(%esp)
    mov CMD_A2(%esi), %eax
    mov %eax, 8(%esp)
    mov CMD_A3(%esi), %eax
    mov %eax, 12(%esp)
    movl $0, 16(%esp)
    movl $0, 20(%esp)
1:  mov 16(%esp), %edx
    cmp 8(%esp), %edx
    jae 5f
    mov 0(%esp), %esi
    lea SCR_CUR(%ebx), %edi
    mov 4(%esp), %ecx
    rep movsb
    test %edx, %edx
    jz 2f
    lea SCR_CUR(%ebx), %esi
    lea SCR_PREV(%ebx), %edi
    mov 4(%esp), %ecx
    repe cmpsb
    je 2f
    incl 20(%esp)
2:  mov 12(%esp), %edi
    test %edi, %edi
    jz 3f
    mov 16(%esp), %eax
    mull 4(%esp)
    add %eax, %edi
    lea SCR_CUR(%ebx), %esi
    mov 4(%esp), %ecx
    rep movsb
3:  lea SCR_CUR(%ebx), %esi
    lea SCR_PREV(%ebx), %edi
    mov 4(%esp), %ecx
    rep movsb
    incl 16(%esp)
    jmp 1b
5:  mov HDR_CUR_RESULT(%ebx), %edi
    mov 20(%esp), %eax
    PUT64 %eax, RES_RET
    mov 16(%esp), %eax
    PUT64 %eax, RES_AUX0
    add $24, %esp
    jmp cmd_ok

# 64-bit fields are read as two 32-bit loads (low, then high), as a 32-bit
# guest does.
rl_runstate:
    mov $8, %ebp
    cmp $RL_RUNSTATE64, %eax
    je 1f
    mov $4, %ebp
1:  sub $24, %esp                   # 0 iterations, 4 dst, 8 i, 12/16 offset
    mov CMD_A2(%esi), %eax
    mov %eax, 0(%esp)
    mov CMD_A3(%esi), %eax
    mov %eax, 4(%esp)
    movl $0, 8(%esp)
    mov CMD_A5(%esi), %eax
    mov %eax, 12(%esp)
    mov CMD_A5+4(%esi), %eax
    mov %eax, 16(%esp)
    mov CMD_A0(%esi), %esi          # src
    xor %eax, %eax
    mov $RES_AUX0, %ecx
0:  movl %eax, (%edi,%ecx)
    add $4, %ecx
    cmp $RESULT_SIZE, %ecx
    jb 0b
    movl $0, SCR_TORN_SAVED(%ebx)
2:  mov 8(%esp), %eax
    cmp 0(%esp), %eax
    jae 9f
    mov (%esi,%ebp), %eax           # t1
    mov %eax, SCR_RS+48(%ebx)
    mov 4(%esi,%ebp), %eax
    mov %eax, SCR_RS+52(%ebx)
    mov (%esi), %eax                # state
    mov %eax, SCR_RS(%ebx)
    movl $0, SCR_RS+4(%ebx)
    xor %ecx, %ecx                  # entry time and times[4]: 10 dwords
10: mov (%esi,%ebp), %eax
    mov %eax, SCR_RS+8(%ebx,%ecx)
    add $4, %esi
    add $4, %ecx
    cmp $40, %ecx
    jb 10b
    sub $40, %esi
    mov (%esi,%ebp), %eax           # t2
    mov %eax, SCR_RS+56(%ebx)
    mov 4(%esi,%ebp), %eax
    mov %eax, SCR_RS+60(%ebx)
    cmpl $0, 8(%esp)
    je 3f
    mov SCR_RS+48(%ebx), %eax
    cmp SCR_PREV(%ebx), %eax
    jne 11f
    mov SCR_RS+52(%ebx), %eax
    cmp SCR_PREV+4(%ebx), %eax
    je 3f
11: INC64 RES_AUX4
3:  mov SCR_RS+48(%ebx), %eax
    mov %eax, SCR_PREV(%ebx)
    mov SCR_RS+52(%ebx), %eax
    mov %eax, SCR_PREV+4(%ebx)
    mov SCR_RS+52(%ebx), %eax       # XEN_RUNSTATE_UPDATE: bit 31 of a high dword
    or SCR_RS+60(%ebx), %eax
    or SCR_RS+12(%ebx), %eax
    test %eax, %eax
    js 4f
    mov SCR_RS+48(%ebx), %eax
    cmp SCR_RS+56(%ebx), %eax
    jne 5f
    cmp SCR_RS+8(%ebx), %eax
    jne 5f
    mov SCR_RS+52(%ebx), %eax
    cmp SCR_RS+60(%ebx), %eax
    jne 5f
    cmp SCR_RS+12(%ebx), %eax
    jne 5f
    mov SCR_RS+16(%ebx), %eax
    mov SCR_RS+20(%ebx), %edx
    add SCR_RS+24(%ebx), %eax
    adc SCR_RS+28(%ebx), %edx
    add SCR_RS+32(%ebx), %eax
    adc SCR_RS+36(%ebx), %edx
    add SCR_RS+40(%ebx), %eax
    adc SCR_RS+44(%ebx), %edx
    add 12(%esp), %eax
    adc 16(%esp), %edx
    cmp SCR_RS+8(%ebx), %eax
    jne 6f
    cmp SCR_RS+12(%ebx), %edx
    jne 6f
    INC64 RES_AUX0
    jmp 8f
4:  INC64 RES_AUX1
    jmp 8f
5:  INC64 RES_AUX2
    jmp 8f
6:  INC64 RES_AUX3
    cmpl $0, 4(%esp)
    je 8f
    cmpl $0, SCR_TORN_SAVED(%ebx)
    jne 8f
    movl $1, SCR_TORN_SAVED(%ebx)
    push %esi
    push %edi
    lea SCR_RS(%ebx), %esi
    mov 12(%esp), %edi              # dst (two pushes above the locals)
    mov $64, %ecx
    rep movsb
    pop %edi
    pop %esi
8:  incl 8(%esp)
    jmp 2b
9:  mov 8(%esp), %eax
    PUT64 %eax, RES_AUX5
    mov RES_AUX3(%edi), %eax
    mov %eax, RES_RET(%edi)
    mov RES_AUX3+4(%edi), %eax
    mov %eax, RES_RET+4(%edi)
    add $24, %esp
    jmp cmd_ok

# ---- upcalls and interrupts ----
op_wait_upcall:
    mov CMD_A0(%esi), %ecx
    mov CMD_A1(%esi), %edx
    test %edx, %edx
    jz 5f
1:  movl HDR_UPCALL_COUNT(%ebx), %eax
    cmp %ecx, %eax
    jae 7f
    dec %edx
    jz 8f
    pause
    jmp 1b
5:  cli
    movl HDR_UPCALL_COUNT(%ebx), %eax
    cmp %ecx, %eax
    jae 7f
    sti
    hlt
    jmp 5b
7:  PUT64 $1, RES_AUX0
8:  RESTORE_IF
    movl HDR_UPCALL_COUNT(%ebx), %eax
    PUT64 %eax, RES_RET
    jmp cmd_ok

op_hlt:
    sti
    hlt
    RESTORE_IF
    jmp cmd_ok

op_set_upcall:
    mov CMD_A0(%esi), %eax
    PUT64 %eax, HDR_UPCALL_WATCH, %ebx
    mov CMD_A1(%esi), %eax
    movl %eax, HDR_UPCALL_FLAGS(%ebx)
    jmp cmd_ok

op_irq:
    mov CMD_A0(%esi), %eax
    or CMD_A0+4(%esi), %eax
    setnz %al
    movzbl %al, %eax
    movl %eax, HDR_IRQ_ON(%ebx)
    RESTORE_IF
    jmp cmd_ok

# ---- host interaction ----
op_yield:
    mov CMD_A0(%esi), %eax
    mov $PORT_YIELD, %dx
    out %eax, %dx
    jmp cmd_ok

op_log:
    mov CMD_A0(%esi), %eax
    mov $PORT_LOG, %dx
    out %eax, %dx
    jmp cmd_ok

op_cpuid:
    mov CMD_A0(%esi), %eax
    mov CMD_A1(%esi), %ecx
    push %ebx
    cpuid
    mov %ebx, %esi
    pop %ebx
    PUT64 %eax, RES_RET
    PUT64 %esi, RES_AUX0
    PUT64 %ecx, RES_AUX1
    PUT64 %edx, RES_AUX2
    jmp cmd_ok

# ---- interrupt and exception entry ----
    .balign 16
stubs:
    .set vec, 0
    .rept 256
    .balign STUB_SIZE
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushl $0
    .endif
    pushl $vec
    jmp common_isr
    .set vec, vec + 1
    .endr

# Frame: 0 vector, 4 error code, 8 eip, 12 cs, 16 eflags (+ esp, ss from CPL 3).
common_isr:
    cmpl $32, (%esp)
    jae irq_entry
    cmpl $6, (%esp)
    jne 1f
    cmpl $user_return_ud2, 8(%esp)  # faulting eip
    je user_return_isr
1:  push %eax
    push %ebx
    mov %esp, %ebx
    and $BLOCK_MASK, %ebx
    mov 8(%esp), %eax
    movl %eax, HDR_FAULT_VEC(%ebx)
    mov 12(%esp), %eax
    PUT64 %eax, HDR_FAULT_ERR, %ebx
    mov 16(%esp), %eax
    PUT64 %eax, HDR_FAULT_RIP, %ebx
    mov 20(%esp), %eax
    movl %eax, HDR_FAULT_CS(%ebx)
    mov %cr2, %eax
    PUT64 %eax, HDR_FAULT_CR2, %ebx
    incl HDR_FAULTS(%ebx)
    cmpl $0, HDR_RECOVER(%ebx)
    je fatal
    movl $0, HDR_RECOVER(%ebx)
    mov HDR_KSP(%ebx), %esp
    KERNEL_DATA_SEGMENTS
    jmp recover

fatal:
    KERNEL_DATA_SEGMENTS
    movl $3, HDR_STATE(%ebx)
    testl $HF_WAIT_GEN, HDR_FLAGS(%ebx)
    jz 1f
    movl HDR_GEN(%ebx), %eax          # no VMM saw the exit: completion is in memory
    movl %eax, HDR_DONE_GEN(%ebx)
1:  movl HDR_FAULT_VEC(%ebx), %eax
    mov $PORT_FAULT, %dx
    out %eax, %dx
    jmp wait_next_batch

# Under a VMM the port write above exits, and the VMM enters the vCPU again with
# the next batch posted. Where no VMM sees it (HF_WAIT_GEN: the Xen target, whose
# dom0 reads the block through a foreign mapping) wait here until the host posts
# a new generation.
wait_next_batch:
    testl $HF_WAIT_GEN, HDR_FLAGS(%ebx)
    jz batch_start
1:  pause
    movl HDR_GEN(%ebx), %eax
    cmpl HDR_DONE_GEN(%ebx), %eax
    je 1b
    jmp batch_start

# Upcall: the pending-selector exchange uses the compat layout (u32 at +4).
irq_entry:
    pushal                          # vector at 32(%esp)
    mov %esp, %ebx
    and $BLOCK_MASK, %ebx
    mov 32(%esp), %esi
    movl %esi, HDR_UPCALL_LAST(%ebx)
    movl HDR_UPCALL_COUNT(%ebx), %ecx
    mov %ecx, %edx
    and $(UPCALL_RING_ENTRIES - 1), %edx
    shl $5, %edx
    lea BLK_UPCALL_RING(%ebx,%edx), %edi
    inc %ecx
    movl %ecx, HDR_UPCALL_COUNT(%ebx)
    movl %esi, 0(%edi)
    movl %ecx, 4(%edi)
    rdtsc
    movl %eax, 8(%edi)
    movl %edx, 12(%edi)
    mov HDR_UPCALL_WATCH(%ebx), %esi
    test %esi, %esi
    jz 1f
    mov 0(%esi), %eax
    mov %eax, 16(%edi)
    mov 4(%esi), %eax
    mov %eax, 20(%edi)
    mov 8(%esi), %eax
    mov %eax, 24(%edi)
    mov 12(%esi), %eax
    mov %eax, 28(%edi)
    testl $UF_CLEAR_PENDING, HDR_UPCALL_FLAGS(%ebx)
    jz 2f
    movb $0, (%esi)
2:  testl $UF_CLEAR_SEL, HDR_UPCALL_FLAGS(%ebx)
    jz 1f
    xor %eax, %eax
    xchg %eax, 4(%esi)
1:  testl $UF_EOI, HDR_UPCALL_FLAGS(%ebx)
    jz 3f
    testl $HF_LAPIC, HDR_FLAGS(%ebx)
    jz 3f
    movl $0, LAPIC_EOI
3:  popal
    add $8, %esp                    # vector, error code
    testl $3, 4(%esp)               # interrupted CPL 3: a real iret
    jnz 4f
    # Back to CPL 0 without iret: some KVMs (PVM) emulate 32-bit iret
    # and their emulator only handles real mode. Reorder the frame
    # (eip, cs, eflags) to (eflags, eip), then popf and ret.
    push %eax
    mov 4(%esp), %eax               # eip
    xchg %eax, 12(%esp)             # eip over eflags; eax = eflags
    mov %eax, 8(%esp)               # eflags over cs
    pop %eax
    add $4, %esp                    # now: eflags, eip
    testl $0x200, (%esp)
    jz 5f
    popfl
    sti                             # popf may not restore IF at hardware ring 3
    ret
5:  popfl
    ret
4:  iret

image_end:
