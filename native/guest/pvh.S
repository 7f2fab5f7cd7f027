# xconf test guest: the PVH entry stub for the Xen target.
#
# Under KVM the VMM (harness/drivers/kvm/guest-vm.ts) sets the CPU state of each
# vCPU itself. A Xen PVH domain starts instead at the XEN_ELFNOTE_PHYS32_ENTRY
# address in 32-bit protected mode with paging off (xen/include/public/arch-x86/
# hvm/start_info.h). This stub is that entry. The domain is built paused; before
# it runs, dom0 (harness/drivers/xen/) writes through a foreign mapping exactly
# what the KVM VMM writes: the guest image at IMAGE_BASE, the page tables, the
# IDT, and vCPU 0's block (header, GDT, TSS). The stub then loads what the KVM
# VMM would have put in the registers (guest.ts guestSregs / guestRegs) and
# jumps to the image's entry:
#   64-bit image: CR3 = PML4, PAE, EFER.LME, paging, CS = SEL_KCODE64
#   32-bit image: CR3 = page directory, PSE, paging, CS = SEL_KCODE32
# and in both: data selectors, TR, IDTR, edi/rdi = block, esp/rsp = block + KSTACK_TOP.
# vCPU 0's block is BLOCK0; another vCPU's comes in %edi (see pvh_ap_entry).
# The image's mode and entry come from its header (layout.inc, image_header).

    .include "layout.inc"

# The kernel data selector in every data segment register and the TSS in TR: the same
# instructions, and bytes, in 32-bit and 64-bit code.
.macro load_segments
    mov $SEL_KDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $SEL_TSS, %ax
    ltr %ax
.endm

.equ BLOCK0,          0x30000
.equ SEL_KCODE64,     0x08
.equ SEL_KDATA,       0x10
.equ SEL_KCODE32,     0x18
.equ SEL_TSS,         0x38
.equ IMG_MODE,        IMAGE_BASE + 8
.equ IMG_ENTRY,       IMAGE_BASE + 12
.equ MSR_EFER,        0xc0000080
.equ AP_ENTRY_OFFSET, 0x10

    .section .note.Xen, "a", @note
    .balign 4
    .long 4, 4, 18                  # namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long pvh_entry

    .text
    .code32
    .globl pvh_entry
# vCPU 0 enters here (the ELF note). Every other vCPU is started by vCPU 0 with
# VCPUOP_initialise at pvh_ap_entry (image start + AP_ENTRY_OFFSET), in the same
# 32-bit flat state with %edi = its block (harness/drivers/xen/xen-guest.ts).
pvh_entry:
    jmp bsp
    .org AP_ENTRY_OFFSET
pvh_ap_entry:
    cli
    cld
    jmp common
    .globl bsp                      # also the qemu target's ROM stub (rom.S) enters here
bsp:
    cli
    cld
    mov $BLOCK0, %edi
common:
    cmpl $GUEST_MAGIC, IMAGE_BASE   # dom0 wrote no image: stop here, visibly
    jne stuck
    # GDTR for this vCPU's block, built in its guest scratch area (unused until batches run).
    movw $0x47, BLK_SCRATCH(%edi)
    lea BLK_GDT(%edi), %eax
    mov %eax, BLK_SCRATCH + 2(%edi)
    lgdt BLK_SCRATCH(%edi)
    # ltr needs an available TSS; the block's GDT describes it as busy (KVM loads TR directly).
    andb $0xfd, BLK_GDT + SEL_TSS + 5(%edi)
    cmpl $64, IMG_MODE
    je to_long_mode
    ljmp $SEL_KCODE32, $start32

start32:
    mov %cr4, %eax
    or $0x10, %eax                  # PSE: the page directory maps 4 MiB pages
    mov %eax, %cr4
    mov $0x2000, %eax               # page directory (guest.ts buildPageTables32)
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax            # PG | WP
    mov %eax, %cr0
    load_segments
    lidt idtr32
    lea KSTACK_TOP(%edi), %esp
    jmp *IMG_ENTRY

to_long_mode:
    mov %cr4, %eax
    or $0x20, %eax                  # PAE
    mov %eax, %cr4
    mov $0x2000, %eax               # PML4 (guest.ts GUEST_LAYOUT.pml4)
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $0x100, %eax                 # LME
    wrmsr
    mov $0x80010033, %eax           # PG | WP | NE | ET | MP | PE
    mov %eax, %cr0
    ljmp $SEL_KCODE64, $start64

    .code64
start64:
    load_segments
    lidt idtr64(%rip)               # RIP-relative: the stub also runs from the ROM at 0xffff0000 (rom.S)
    mov %edi, %edi                  # the block, zero-extended into %rdi
    lea KSTACK_TOP(%rdi), %rsp
    movl IMG_ENTRY, %eax
    jmp *%rax

    .code32
stuck:
    hlt
    jmp stuck

    .section .rodata
    .balign 8
idtr64:
    .word 256 * 16 - 1
    .quad 0x1000
    .balign 8
idtr32:
    .word 256 * 8 - 1
    .long 0x1000
