# xconf test guest, 64-bit long mode.
#
# The VMM (harness/drivers/kvm/addon.ts) loads this flat image at IMAGE_BASE,
# builds the page tables, GDT, TSS and IDT itself, and starts each vCPU at
# `entry` in long mode at CPL 0 with
#     rdi = its per-vCPU block, rsp = block + KSTACK_TOP, IF = 0.
# The guest then runs batches: for each command in the block's queue it writes
# a result record (see layout.inc), then signals "done" with an OUT to
# PORT_DONE. When the VMM enters the vCPU again it starts the next batch.
#
# Register use in the command loop: rbx = block, r12 = current command,
# r13 = current result, r14 = command index. Ops may clobber any register but
# rbx; `cmd_ok` reloads the others from the header.
# Hypercall convention: rax = nr, args rdi rsi rdx r10 r8 r9, result rax.

    .include "layout.inc"

    .code64
    .text
    .globl _start
_start:
image_header:
    .long GUEST_MAGIC, LAYOUT_VERSION, 64, entry
    .long stubs, STUB_SIZE, user_return_ud2, BLOCK_SIZE
    .long BLK_CMDS, BLK_RESULTS, MAX_CMDS, CMD_SIZE
    .long RESULT_SIZE, BLK_UPCALL_RING, UPCALL_RING_ENTRIES, PORT_BASE
    .long OP_MAX, 0, BLK_GDT, BLK_TSS
    .long image_end - _start, 0, 0, 0

# Recompute rbx, r12, r13, r14 from the stack pointer and the header.
.macro RELOAD
    mov %rsp, %rbx
    and $BLOCK_MASK, %rbx
    movl HDR_CUR(%rbx), %r14d
    mov HDR_CUR_RESULT(%rbx), %r13
    mov %r14, %r12
    shl $6, %r12
    lea BLK_CMDS(%rbx,%r12), %r12
.endm

# Set IF as the queue asked (OP_IRQ), default on.
.macro RESTORE_IF
    cmpl $0, HDR_IRQ_ON(%rbx)
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
    movl HDR_GEN(%rbx), %eax
    shl $8, %eax
    or $\code, %eax
    movl %eax, RES_STATUS(%r13)
.endm

    .balign 16
entry:
    mov %rdi, %rbx
    testl $HF_LAPIC, HDR_FLAGS(%rbx)
    jz 1f
    mov $LAPIC_SVR, %eax            # software-enable the LAPIC, spurious vector 0xff
    movl $0x1ff, (%rax)
1:  movl $1, HDR_IRQ_ON(%rbx)

batch_start:
    lea KSTACK_TOP(%rbx), %rsp
    RESTORE_IF
    movl $0, HDR_RECOVER(%rbx)
    movl $1, HDR_STATE(%rbx)
    xor %r14d, %r14d

next_cmd:
    movl HDR_COUNT(%rbx), %eax
    cmp $MAX_CMDS, %eax
    jbe 1f
    mov $MAX_CMDS, %eax
1:  cmp %eax, %r14d
    jae batch_done
    movl %r14d, HDR_CUR(%rbx)
    mov %r14, %r12
    shl $6, %r12
    lea BLK_RESULTS(%rbx,%r12), %r13
    lea BLK_CMDS(%rbx,%r12), %r12
    mov %r13, HDR_CUR_RESULT(%rbx)
    mov %rsp, HDR_KSP(%rbx)
    movl $1, HDR_RECOVER(%rbx)
    movl CMD_OP(%r12), %eax
    cmp $OP_MAX, %eax
    ja op_bad
    lea dispatch(%rip), %rcx
    jmp *(%rcx,%rax,8)

cmd_ok:
    RELOAD
    movl $0, HDR_RECOVER(%rbx)
    SET_STATUS ST_OK
    inc %r14d
    jmp next_cmd

# Entered from an exception handler with rsp = HDR_KSP: the command faulted.
recover:
    RELOAD
    RESTORE_IF
    movl HDR_FAULT_VEC(%rbx), %eax
    movl %eax, RES_VECTOR(%r13)
    mov HDR_FAULT_ERR(%rbx), %rax
    mov %rax, RES_AUX0(%r13)
    mov HDR_FAULT_RIP(%rbx), %rax
    mov %rax, RES_AUX1(%r13)
    mov HDR_FAULT_CR2(%rbx), %rax
    mov %rax, RES_AUX2(%r13)
    movl HDR_FAULT_CS(%rbx), %eax
    mov %rax, RES_AUX3(%r13)
    SET_STATUS ST_FAULT
    inc %r14d
    jmp next_cmd

batch_done:
    movl $0, HDR_RECOVER(%rbx)
    movl HDR_GEN(%rbx), %eax
    movl %eax, HDR_DONE_GEN(%rbx)
    movl $2, HDR_STATE(%rbx)
    mov $PORT_DONE, %dx
    out %eax, %dx
    jmp wait_next_batch

    .balign 8
dispatch:
    .quad op_end, op_hcall, op_vmcall, op_vmmcall
    .quad op_wrmsr, op_rdmsr, op_read, op_write
    .quad op_readloop, op_wait_upcall, op_hlt, op_yield
    .quad op_log, op_set_upcall, op_irq, op_cpuid

op_bad:
    ud2                             # recorded as a #UD fault of this command

op_end:
    SET_STATUS ST_OK
    jmp batch_done

# ---- calls: hypercall page, raw vmcall, raw vmmcall, at CPL 0 or CPL 3 ----
op_hcall:
    mov CMD_A0(%r12), %rax
    shl $5, %rax
    add HDR_HCALL_PAGE(%rbx), %rax
    jmp do_invoke
op_vmcall:
    lea stub_vmcall(%rip), %rax
    jmp do_invoke
op_vmmcall:
    lea stub_vmmcall(%rip), %rax

do_invoke:                          # rax = call target, r12 = command
    testl $CF_CPL3, CMD_FLAGS(%r12)
    jnz invoke_user
    push %rbx
    push %r13
    mov %r12, %r11
    call invoke64
    pop %r13
    pop %rbx
    mov %rax, RES_RET(%r13)
    mov %rdi, RES_AUX0(%r13)
    mov %rsi, RES_AUX1(%r13)
    mov %rdx, RES_AUX2(%r13)
    mov %r10, RES_AUX3(%r13)
    mov %r8, RES_AUX4(%r13)
    mov %r9, RES_AUX5(%r13)
    jmp cmd_ok

# Load the argument registers from the command at r11 and call the target
# in rax. Runs at CPL 0 or CPL 3.
invoke64:
    push %rax
    mov CMD_A0(%r11), %rax
    mov CMD_A1(%r11), %rdi
    mov CMD_A2(%r11), %rsi
    mov CMD_A3(%r11), %rdx
    mov CMD_A4(%r11), %r10
    mov CMD_A5(%r11), %r8
    mov CMD_A6(%r11), %r9
    call *(%rsp)
    lea 8(%rsp), %rsp
    ret

stub_vmcall:
    vmcall
    ret
stub_vmmcall:
    vmmcall
    ret

invoke_user:
    mov %rsp, HDR_KSP(%rbx)
    lea user_resume(%rip), %rcx
    mov %rcx, HDR_RESUME_IP(%rbx)
    mov %r12, %r11
    lea USTACK_TOP(%rbx), %rcx
    pushq $(SEL_UDATA | 3)
    push %rcx
    pushfq
    pushq $(SEL_UCODE64 | 3)
    lea user_entry(%rip), %rcx
    push %rcx
    iretq

user_entry:                         # CPL 3
    call invoke64
# The way back to CPL 0: this #UD is recognised by its address in
# common_isr. (A DPL-3 `int` gate would do on VMX/SVM, but not on every KVM:
# PVM turns `int n` from guest ring 3 into #UD; a #UD works everywhere.)
user_return_ud2:
    ud2

# Reached from common_isr at CPL 0 on the TSS rsp0 stack with the call's
# registers intact.
user_return_isr:
    mov %rsp, %r11
    and $BLOCK_MASK, %r11
    mov HDR_CUR_RESULT(%r11), %rcx
    mov %rax, RES_RET(%rcx)
    mov %rdi, RES_AUX0(%rcx)
    mov %rsi, RES_AUX1(%rcx)
    mov %rdx, RES_AUX2(%rcx)
    mov %r10, RES_AUX3(%rcx)
    mov %r8, RES_AUX4(%rcx)
    mov %r9, RES_AUX5(%rcx)
    mov %r11, %rbx
    mov HDR_KSP(%rbx), %rsp
    KERNEL_DATA_SEGMENTS
    jmp *HDR_RESUME_IP(%rbx)

user_resume:
    RELOAD
    RESTORE_IF
    jmp cmd_ok

# ---- MSRs, memory ----
op_wrmsr:
    mov CMD_A0(%r12), %ecx
    mov CMD_A1(%r12), %eax
    mov CMD_A1+4(%r12), %edx
    wrmsr
    jmp cmd_ok

op_rdmsr:
    mov CMD_A0(%r12), %ecx
    rdmsr
    shl $32, %rdx
    mov %eax, %eax
    or %rdx, %rax
    mov %rax, RES_RET(%r13)
    jmp cmd_ok

op_read:
    mov CMD_A0(%r12), %rsi
    mov CMD_A1(%r12), %rcx
    cmp $1, %rcx
    je 1f
    cmp $2, %rcx
    je 2f
    cmp $4, %rcx
    je 4f
    mov (%rsi), %rax
    jmp 9f
1:  movzbl (%rsi), %eax
    jmp 9f
2:  movzwl (%rsi), %eax
    jmp 9f
4:  movl (%rsi), %eax
9:  mov %rax, RES_RET(%r13)
    jmp cmd_ok

op_write:
    mov CMD_A0(%r12), %rdi
    mov CMD_A1(%r12), %rcx
    mov CMD_A2(%r12), %rax
    cmp $1, %rcx
    je 1f
    cmp $2, %rcx
    je 2f
    cmp $4, %rcx
    je 4f
    mov %rax, (%rdi)
    jmp cmd_ok
1:  mov %al, (%rdi)
    jmp cmd_ok
2:  mov %ax, (%rdi)
    jmp cmd_ok
4:  mov %eax, (%rdi)
    jmp cmd_ok

# ---- read loop ----
op_readloop:
    mov CMD_A4(%r12), %rax
    cmp $RL_COPY, %rax
    je rl_copy
    cmp $RL_RUNSTATE64, %rax
    je rl_runstate
    cmp $RL_RUNSTATE32, %rax
    je rl_runstate
    ud2

# Copy `len` bytes from src `iterations` times. ret = number of snapshots
# that differ from the one before, aux0 = iterations done. With dst != 0,
# snapshot i is stored at dst + i * len.
rl_copy:
    mov CMD_A0(%r12), %r8           # src
    mov CMD_A1(%r12), %r9           # len (1..256)
    mov CMD_A2(%r12), %r10          # iterations
    mov CMD_A3(%r12), %r11          # dst
    xor %r15d, %r15d                # i
    xor %ebp, %ebp                  # changes
1:  cmp %r10, %r15
    jae 5f
    mov %r8, %rsi
    lea SCR_CUR(%rbx), %rdi
    mov %r9, %rcx
    rep movsb
    test %r15, %r15
    jz 2f
    lea SCR_CUR(%rbx), %rsi
    lea SCR_PREV(%rbx), %rdi
    mov %r9, %rcx
    repe cmpsb
    je 2f
    inc %rbp
2:  test %r11, %r11
    jz 3f
    mov %r15, %rax
    imul %r9, %rax
    lea (%r11,%rax), %rdi
    lea SCR_CUR(%rbx), %rsi
    mov %r9, %rcx
    rep movsb
3:  lea SCR_CUR(%rbx), %rsi
    lea SCR_PREV(%rbx), %rdi
    mov %r9, %rcx
    rep movsb
    inc %r15
    jmp 1b
5:  mov %rbp, RES_RET(%r13)
    mov %r15, RES_AUX0(%r13)
    jmp cmd_ok

# Torn-read check of a vcpu_runstate_info at src (native layout: entry time
# at +8, compat: at +4; times[4] follow the entry time). Each iteration
# reads t1 = entry time, copies the struct, reads t2 = entry time, and
# classifies the snapshot:
#   busy  (aux1): XEN_RUNSTATE_UPDATE (bit 63) seen in t1, t2 or the copy
#   raced (aux2): t1, t2 and the copied entry time differ
#   torn  (aux3): stable and flag clear, but entry != sum(times) + a5
#   ok    (aux0): otherwise
# aux4 = times t1 changed between iterations, aux5 = iterations, ret = torn.
# With dst != 0 the first torn snapshot is stored there as 64 bytes:
# state u32, pad, entry, times[4], t1, t2.
rl_runstate:
    mov $8, %ebp
    cmp $RL_RUNSTATE64, %rax
    je 1f
    mov $4, %ebp
1:  mov CMD_A0(%r12), %r8           # src
    mov CMD_A2(%r12), %r10          # iterations
    mov CMD_A3(%r12), %r11          # dst
    xor %eax, %eax
    mov %rax, RES_AUX0(%r13)
    mov %rax, RES_AUX1(%r13)
    mov %rax, RES_AUX2(%r13)
    mov %rax, RES_AUX3(%r13)
    mov %rax, RES_AUX4(%r13)
    mov %rax, RES_AUX5(%r13)
    movl $0, SCR_TORN_SAVED(%rbx)
    xor %r15d, %r15d
2:  cmp %r10, %r15
    jae 9f
    mov (%r8,%rbp), %rax            # t1
    mov %rax, SCR_RS+48(%rbx)
    movl (%r8), %ecx                # state
    mov %rcx, SCR_RS(%rbx)
    mov (%r8,%rbp), %rcx
    mov %rcx, SCR_RS+8(%rbx)
    mov 8(%r8,%rbp), %rcx
    mov %rcx, SCR_RS+16(%rbx)
    mov 16(%r8,%rbp), %rcx
    mov %rcx, SCR_RS+24(%rbx)
    mov 24(%r8,%rbp), %rcx
    mov %rcx, SCR_RS+32(%rbx)
    mov 32(%r8,%rbp), %rcx
    mov %rcx, SCR_RS+40(%rbx)
    mov (%r8,%rbp), %rdx            # t2
    mov %rdx, SCR_RS+56(%rbx)
    test %r15, %r15
    jz 3f
    cmp %rax, SCR_PREV(%rbx)
    je 3f
    incq RES_AUX4(%r13)
3:  mov %rax, SCR_PREV(%rbx)
    mov %rax, %rcx
    or %rdx, %rcx
    or SCR_RS+8(%rbx), %rcx
    bt $63, %rcx
    jc 4f
    cmp %rax, %rdx
    jne 5f
    cmp %rax, SCR_RS+8(%rbx)
    jne 5f
    mov SCR_RS+16(%rbx), %rcx
    add SCR_RS+24(%rbx), %rcx
    add SCR_RS+32(%rbx), %rcx
    add SCR_RS+40(%rbx), %rcx
    add CMD_A5(%r12), %rcx
    cmp %rcx, %rax
    jne 6f
    incq RES_AUX0(%r13)
    jmp 8f
4:  incq RES_AUX1(%r13)
    jmp 8f
5:  incq RES_AUX2(%r13)
    jmp 8f
6:  incq RES_AUX3(%r13)
    test %r11, %r11
    jz 8f
    cmpl $0, SCR_TORN_SAVED(%rbx)
    jne 8f
    movl $1, SCR_TORN_SAVED(%rbx)
    lea SCR_RS(%rbx), %rsi
    mov %r11, %rdi
    mov $64, %ecx
    rep movsb
8:  inc %r15
    jmp 2b
9:  mov %r15, RES_AUX5(%r13)
    mov RES_AUX3(%r13), %rax
    mov %rax, RES_RET(%r13)
    jmp cmd_ok

# ---- upcalls and interrupts ----
# Wait until the upcall count reaches a0. a1 = 0: sleep in HLT between
# checks; otherwise give up after a1 checks. ret = count, aux0 = 1 if reached.
op_wait_upcall:
    movl CMD_A0(%r12), %ecx
    mov CMD_A1(%r12), %rdx
    test %rdx, %rdx
    jz 5f
1:  movl HDR_UPCALL_COUNT(%rbx), %eax
    cmp %ecx, %eax
    jae 7f
    dec %rdx
    jz 8f
    pause
    jmp 1b
5:  cli
    movl HDR_UPCALL_COUNT(%rbx), %eax
    cmp %ecx, %eax
    jae 7f
    sti
    hlt
    jmp 5b
7:  movq $1, RES_AUX0(%r13)
8:  RESTORE_IF
    movl HDR_UPCALL_COUNT(%rbx), %eax
    mov %rax, RES_RET(%r13)
    jmp cmd_ok

op_hlt:
    sti
    hlt
    RESTORE_IF
    jmp cmd_ok

op_set_upcall:
    mov CMD_A0(%r12), %rax
    mov %rax, HDR_UPCALL_WATCH(%rbx)
    mov CMD_A1(%r12), %eax
    movl %eax, HDR_UPCALL_FLAGS(%rbx)
    jmp cmd_ok

op_irq:
    mov CMD_A0(%r12), %rax
    test %rax, %rax
    setnz %al
    movzbl %al, %eax
    movl %eax, HDR_IRQ_ON(%rbx)
    RESTORE_IF
    jmp cmd_ok

# ---- host interaction ----
op_yield:
    mov CMD_A0(%r12), %eax
    mov $PORT_YIELD, %dx
    out %eax, %dx
    jmp cmd_ok

op_log:
    mov CMD_A0(%r12), %eax
    mov $PORT_LOG, %dx
    out %eax, %dx
    jmp cmd_ok

op_cpuid:
    mov CMD_A0(%r12), %eax
    mov CMD_A1(%r12), %ecx
    push %rbx
    cpuid
    mov %rbx, %rsi
    pop %rbx
    mov %rax, RES_RET(%r13)
    mov %rsi, RES_AUX0(%r13)
    mov %rcx, RES_AUX1(%r13)
    mov %rdx, RES_AUX2(%r13)
    jmp cmd_ok

# ---- interrupt and exception entry ----
# 256 stubs of STUB_SIZE bytes; stub v pushes a dummy error code unless the
# CPU pushes one, then the vector.
    .balign 16
stubs:
    .set vec, 0
    .rept 256
    .balign STUB_SIZE
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp common_isr
    .set vec, vec + 1
    .endr

common_isr:
    cmpq $32, (%rsp)
    jae irq_entry
    cmpq $6, (%rsp)
    jne 1f
    push %rax
    lea user_return_ud2(%rip), %rax
    cmp %rax, 24(%rsp)              # faulting rip
    pop %rax
    je user_return_isr
1:  push %rax
    push %rbx
    mov %rsp, %rbx
    and $BLOCK_MASK, %rbx
    mov 16(%rsp), %rax
    movl %eax, HDR_FAULT_VEC(%rbx)
    mov 24(%rsp), %rax
    mov %rax, HDR_FAULT_ERR(%rbx)
    mov 32(%rsp), %rax
    mov %rax, HDR_FAULT_RIP(%rbx)
    mov 40(%rsp), %rax
    movl %eax, HDR_FAULT_CS(%rbx)
    mov %cr2, %rax
    mov %rax, HDR_FAULT_CR2(%rbx)
    incl HDR_FAULTS(%rbx)
    cmpl $0, HDR_RECOVER(%rbx)
    je fatal
    movl $0, HDR_RECOVER(%rbx)
    mov HDR_KSP(%rbx), %rsp
    KERNEL_DATA_SEGMENTS
    jmp recover

# An exception outside a command: report it, then start over when resumed.
fatal:
    KERNEL_DATA_SEGMENTS
    movl $3, HDR_STATE(%rbx)
    testl $HF_WAIT_GEN, HDR_FLAGS(%rbx)
    jz 1f
    movl HDR_GEN(%rbx), %eax          # no VMM saw the exit: completion is in memory
    movl %eax, HDR_DONE_GEN(%rbx)
1:  movl HDR_FAULT_VEC(%rbx), %eax
    mov $PORT_FAULT, %dx
    out %eax, %dx
    jmp wait_next_batch

# Under a VMM the port write above exits, and the VMM enters the vCPU again with
# the next batch posted. Where no VMM sees it (HF_WAIT_GEN: the Xen target, whose
# dom0 reads the block through a foreign mapping) wait here until the host posts
# a new generation.
wait_next_batch:
    testl $HF_WAIT_GEN, HDR_FLAGS(%rbx)
    jz batch_start
1:  pause
    movl HDR_GEN(%rbx), %eax
    cmpl HDR_DONE_GEN(%rbx), %eax
    je 1b
    jmp batch_start

# Vectors 32..255: an upcall. Record it in the ring, snapshot the watched
# vcpu_info, optionally clear evtchn_upcall_pending / evtchn_pending_sel,
# and EOI the LAPIC.
irq_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbx
    mov %rsp, %rbx
    and $BLOCK_MASK, %rbx
    mov 48(%rsp), %rsi              # vector
    movl %esi, HDR_UPCALL_LAST(%rbx)
    movl HDR_UPCALL_COUNT(%rbx), %ecx
    mov %ecx, %edx
    and $(UPCALL_RING_ENTRIES - 1), %edx
    shl $5, %edx
    lea BLK_UPCALL_RING(%rbx,%rdx), %rdi
    inc %ecx
    movl %ecx, HDR_UPCALL_COUNT(%rbx)
    movl %esi, 0(%rdi)
    movl %ecx, 4(%rdi)
    rdtsc
    movl %eax, 8(%rdi)
    movl %edx, 12(%rdi)
    mov HDR_UPCALL_WATCH(%rbx), %rsi
    test %rsi, %rsi
    jz 1f
    mov (%rsi), %rax
    mov %rax, 16(%rdi)
    mov 8(%rsi), %rax
    mov %rax, 24(%rdi)
    testl $UF_CLEAR_PENDING, HDR_UPCALL_FLAGS(%rbx)
    jz 2f
    movb $0, (%rsi)
2:  testl $UF_CLEAR_SEL, HDR_UPCALL_FLAGS(%rbx)
    jz 1f
    xor %eax, %eax
    xchg %rax, 8(%rsi)
1:  testl $UF_EOI, HDR_UPCALL_FLAGS(%rbx)
    jz 3f
    testl $HF_LAPIC, HDR_FLAGS(%rbx)
    jz 3f
    mov $LAPIC_EOI, %eax
    movl $0, (%rax)
3:  pop %rbx
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp
    iretq

image_end:
