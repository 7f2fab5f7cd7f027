# xconf test guest: the -bios ROM entry stub for the qemu target.
#
# QEMU (harness/drivers/qemu/) runs the same guest as the kvm and xen targets, with no
# firmware: this 64 KiB image is the BIOS. The CPU starts at 0xfffffff0 in real mode
# (CS base 0xffff0000); the reset vector jumps to the image's ISA alias at 0xf0000,
# which loads a flat GDT kept in this ROM, enters 32-bit protected mode and goes on
# where the PVH stub's vCPU 0 does (pvh.S bsp): the harness has written the image,
# page tables, IDT and vCPU 0's block into guest RAM before QEMU starts, as dom0 does
# for the xen target before it unpauses the domain.
#
# The GDT descriptors have their accessed bit preset (type 0x9b / 0x93): the GDT is
# in ROM, and under KVM a segment load that must set the bit writes to a read-only
# memory slot and never completes (TCG does not show it).

    .section .rom16, "ax"
    .code16
    .globl rom_start
rom_start:
    cli
    cld
    lgdtl %cs:(rom_gdtr - rom_start)
    mov %cr0, %eax
    or $1, %eax                     # PE
    mov %eax, %cr0
    ljmpl $0x08, $rom32

    .code32
rom32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    jmp bsp

    .balign 16
rom_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff        # 0x08: flat 32-bit code
    .quad 0x00cf93000000ffff        # 0x10: flat 32-bit data
rom_gdt_end:
    .balign 4
rom_gdtr:
    .word rom_gdt_end - rom_gdt - 1
    .long rom_gdt

    .section .reset, "ax"
    .code16
    .globl rom_reset
rom_reset:
    ljmp $0xf000, $0                # rom_start, through the ISA alias of the ROM's last 64 KiB
    .balign 16, 0xf4
